"""The recorder's link to Redis: a circuit breaker, so that a Redis outage never stops the recording.

While Redis answers, calls go through. The first error opens the circuit: it is logged once, further
calls are skipped (segments keep going to disk), and `reconnect()` pings every `RETRY_EVERY` seconds.
When Redis answers again the caller rebuilds the index from the disk, which is the source of truth.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import redis

from common.log import event, get_logger

log = get_logger(__name__)
T = TypeVar("T")

RETRY_EVERY = 2.0


class RedisLink:
    """One camera's Redis connection; `call()` returns None instead of raising while Redis is down."""

    def __init__(self, conn: redis.Redis, camera: str) -> None:
        self.conn = conn
        self.camera = camera
        self.ok = True
        self.next_try = 0.0

    def call(self, fn: Callable[[], T]) -> T | None:
        """Run a Redis operation; if Redis is down, note it and carry on recording to disk."""
        if not self.ok:
            return None
        try:
            return fn()
        except redis.RedisError as exc:
            self.ok = False
            self.next_try = time.monotonic() + RETRY_EVERY
            event(
                log,
                "redis_down",
                logging.WARNING,
                msg=f"Redis is unreachable ({exc}); recording continues to disk, the index is rebuilt "
                "from disk when Redis is back",
                camera=self.camera,
            )
            return None

    def reconnect(self) -> bool:
        """While the circuit is open, ping when due; True once, when Redis answers again."""
        if self.ok or time.monotonic() < self.next_try:
            return False
        try:
            self.conn.ping()
        except redis.RedisError:
            self.next_try = time.monotonic() + RETRY_EVERY
            return False
        self.ok = True
        return True
