"""The dashboard's session and CSRF token, rate limits, and the request-body cap.

The session is one signed cookie (itsdangerous; HttpOnly, SameSite=Strict) holding a random CSRF token
and whether the password was given. Every state-changing request must send that token back in its form:
a page on another site can neither read the cookie nor the token. The signing key is random per process:
a restart of the web app only asks the operator to log in again.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "gn_admin"
SESSION_SECONDS = 12 * 3600
# Form bodies are a password or a job id: anything bigger is not ours.
MAX_BODY_BYTES = 16 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class Sessions:
    """Signs and reads the dashboard's session cookie."""

    def __init__(self, key: bytes | None = None) -> None:
        self._signer = URLSafeTimedSerializer(key or secrets.token_bytes(32), salt="gn-admin")

    def new(self, authed: bool = False) -> dict[str, Any]:
        """A fresh session with a new CSRF token (a login rotates it, so a planted token dies)."""
        return {"csrf": secrets.token_urlsafe(24), "auth": authed}

    def dump(self, session: dict[str, Any]) -> str:
        """The cookie value."""
        return self._signer.dumps(session)

    def load(self, value: str | None) -> dict[str, Any] | None:
        """The session in a cookie, or None when missing, forged or expired."""
        if not value:
            return None
        try:
            data = self._signer.loads(value, max_age=SESSION_SECONDS)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("csrf"), str):
            return None
        return data


def same(a: str, b: str) -> bool:
    """Constant-time equality of two texts (password, CSRF token)."""
    return hmac.compare_digest(a.encode(), b.encode())


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
