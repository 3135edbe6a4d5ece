"""The device's counters in Redis (`keys.counters`, one field a `keys.Counter`): the one way to count."""

from __future__ import annotations

import contextlib

import redis

from common import keys
from common.settings import Settings


def incr(conn: redis.Redis, settings: Settings, counter: keys.Counter, amount: int = 1) -> None:
    """Add to one of the device's counters; Redis errors ignored."""
    with contextlib.suppress(redis.RedisError):
        conn.hincrby(keys.counters(settings.device_id), counter, amount)
