"""The watchdog's decisions: is ffmpeg stalled, and how long to wait before the next restart.

Only "a new closed segment appeared recently" proves a recording is healthy: ffmpeg can stay alive while
writing nothing (an RTSP camera that dropped). The recorder's loop asks `stalled()` and restarts
ffmpeg with `Backoff` delays; both are plain state machines driven by the time the caller passes in.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Backoff:
    """Exponential restart delays: first, 2×first, 4×first … capped; reset once recording works."""

    first: float = 0.5
    cap: float = 30.0
    failures: int = 0

    def next_delay(self) -> float:
        """The wait before the next restart; each call counts one more consecutive failure."""
        delay = min(self.cap, self.first * (2**self.failures))
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


def stall_limit(stall_seconds: float, seg_time: float, keyframe_interval: float | None) -> float:
    """The watchdog's limit: GN_STALL_SECONDS, stretched when keyframes (hence segments) are further apart."""
    extra = max(0.0, (keyframe_interval or seg_time) - seg_time)
    return stall_seconds + extra
