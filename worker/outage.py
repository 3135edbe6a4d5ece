"""A worker loop that outlives Redis (the scheduler's, the ahead builder's): Redis going away and coming
back is logged once each, not once per try."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from common.log import event, get_logger

log = get_logger(__name__)


class Outage:
    """A loop that outlives Redis: it logs Redis going away and coming back once each, not once per try
    (`<process>_redis_down`, then `<process>_redis_back` with how long it was down)."""

    def __init__(self, process: str) -> None:
        self.process = process
        self.since: float | None = None

    def turn(self, work: Callable[[], object], pause: float, retry: float) -> None:
        """One pass of the loop: `work()`, then a `pause`; after a Redis error, a `retry` wait instead."""
        try:
            work()
        except redis.RedisError as exc:
            self.down(exc)
            time.sleep(retry)
            return
        self.up()
        time.sleep(pause)

    def down(self, exc: redis.RedisError) -> None:
        """A Redis call failed."""
        if self.since is None:
            self.since = time.time()
            event(log, f"{self.process}_redis_down", 30, error=type(exc).__name__)

    def up(self) -> None:
        """A pass went through."""
        if self.since is not None:
            event(log, f"{self.process}_redis_back", down_s=round(time.time() - self.since, 1))
            self.since = None
