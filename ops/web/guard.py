"""The defences every route shares: the request-body cap, rate limits, the security headers of every
response, the Origin check behind the CSRF token, and who the client is.

The dashboard's login itself (the signed session cookie and its CSRF token) is ops/web/auth.py.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.requests import Request

# Form bodies are a password or a job id: anything bigger is not ours.
MAX_BODY_BYTES = 16 * 1024
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    # Everything the pages use comes from the box itself: no inline script, no CDN.
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; "
        "script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
}

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class RateLimit:
    """At most `limit` events per `window` seconds per key (a client address); bounded memory."""

    def __init__(self, limit: int, window: float, max_keys: int = 4096) -> None:
        self.limit, self.window, self.max_keys = limit, window, max_keys
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> bool:
        """Count one event; False when the key is over its limit (the event is not counted then)."""
        t = time.monotonic()
        with self._lock:
            q = self._events.get(key)
            if q is None:
                if len(self._events) >= self.max_keys:
                    self._prune(t)
                q = self._events[key] = deque()
            while q and t - q[0] > self.window:
                q.popleft()
            if len(q) >= self.limit:
                return False
            q.append(t)
            return True

    def full(self, key: str) -> bool:
        """True when the key has used its `limit` events of the current window (nothing is counted)."""
        t = time.monotonic()
        with self._lock:
            q = self._events.get(key)
            return q is not None and sum(1 for x in q if t - x <= self.window) >= self.limit

    def _prune(self, t: float) -> None:
        for key in [k for k, q in self._events.items() if not q or t - q[-1] > self.window]:
            del self._events[key]
        if len(self._events) >= self.max_keys:  # still full of live keys: forget the oldest half
            for key in list(self._events)[: self.max_keys // 2]:
                del self._events[key]


class BodyLimit:
    """ASGI middleware: a declared request body over MAX_BODY_BYTES gets 413 before any handler runs."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], limit: int = MAX_BODY_BYTES):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse by Content-Length; a chunked body is counted by `read_form` as it is read."""
        if scope["type"] == "http":
            for name, value in scope.get("headers", []):
                if name == b"content-length":
                    try:
                        declared = int(value)
                    except ValueError:
                        declared = -1
                    if declared < 0 or declared > self.limit:
                        await _plain(send, 413 if declared > self.limit else 400, b"bad request body")
                        return
        await self.app(scope, receive, send)


async def _plain(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})


class SecurityHeaders:
    """ASGI middleware adding SECURITY_HEADERS to every response."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Add the headers at response start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

        async def send_with(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, send_with)


def same_origin(request: Request) -> bool:
    """A browser's Origin header, when sent, must be this host (a second line behind the CSRF token)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def client(request: Request) -> str:
    """The client's address, the key of its rate limits."""
    return request.client.host if request.client else "?"
