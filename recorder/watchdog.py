"""The watchdog's decisions: is ffmpeg stalled, and when to try the camera again.

Only "a new closed segment appeared recently" proves a recording is healthy: ffmpeg can stay alive while
writing nothing (an RTSP camera that dropped). The supervisor asks `stalled()` and restarts ffmpeg with
`Backoff` delays; both are plain state machines driven by the time the caller passes in.

A network camera that dropped is not retried by spawning ffmpeg again and again: `reachable()` (one TCP
connect to the camera's host:port, a few hundred bytes on the wire) is tried every `PROBE_EVERY` seconds
while the camera does not answer, and ffmpeg starts as soon as it does. So a camera that comes back
records again within about `PROBE_EVERY` + ffmpeg's start-up, however long it was gone, while a camera
gone for good costs one connection attempt a second and no process. The exponential backoff only
paces failures of a camera that does answer (wrong path, wrong password, a stream that will not start).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

# The watchdog's limit is the number every reader of the recorder's verdict judges the camera by: it is
# defined once, beside that reader, and the recorder publishes the value it uses (recorder/loop.py).
from common.verdict import stall_limit as stall_limit

# Seconds between reachability checks of a network camera that does not answer.
PROBE_EVERY = 1.0
# How long one check waits for the TCP handshake (a camera on the LAN answers in milliseconds).
PROBE_TIMEOUT = 1.0
# Default ports of the URL schemes whose host:port a TCP connect can check (UDP cannot be checked).
DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443, "rtmp": 1935, "tcp": None}


@dataclass
class Backoff:
    """Exponential restart delays: first, 2×first, 4×first … capped; reset once recording works."""

    first: float = 0.5
    cap: float = 30.0
    failures: int = 0

    def next_delay(self) -> float:
        """The wait before the next restart; each call counts one more consecutive failure."""
        # The exponent stops at 64, far past any cap: 2**1024 does not fit a float, and a camera that answers
        # but will not stream (a wrong password) fails that many times in some 9 hours at a 30 s cap.
        delay = min(self.cap, self.first * 2.0 ** min(self.failures, 64))
        self.failures += 1
        return delay

    def reset(self) -> None:
        """A segment closed: the camera works again."""
        self.failures = 0


@dataclass
class Watchdog:
    """Stall detection: no closed segment for `limit` seconds since ffmpeg started or the last one."""

    limit: float
    # Extra allowance for a new ffmpeg's first segment (connecting, probing the input).
    startup: float = 0.0
    last_progress: float | None = None

    def started(self, t: float) -> None:
        """ffmpeg was (re)started at monotonic time `t`."""
        self.last_progress = t + self.startup

    def progress(self, t: float) -> None:
        """A segment closed at monotonic time `t`."""
        self.last_progress = t

    def stalled(self, t: float) -> bool:
        """True when nothing closed for longer than the limit."""
        return self.last_progress is not None and t - self.last_progress > self.limit


def probe_target(source: str) -> tuple[str, int] | None:
    """The host:port a TCP connect can check for this camera source (None: not a TCP network source)."""
    try:
        url = urlsplit(source)
        port = url.port
    except ValueError:
        return None
    scheme = url.scheme.lower()
    if scheme not in DEFAULT_PORTS or not url.hostname:
        return None
    port = port or DEFAULT_PORTS[scheme]
    return (url.hostname, port) if port else None


def reachable(target: tuple[str, int], timeout: float = PROBE_TIMEOUT) -> str | None:
    """None when something accepts a TCP connection at `target`, else why not (one short line)."""
    try:
        with socket.create_connection(target, timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__
