"""The Redis connection: a client set up as every process of the box sets it up, waiting for Redis at
start, RQ's serializer (JSON, never pickle), and the helpers that read redis-py's replies.

What the box keeps in Redis has its own module each: common/counters.py, common/alarms.py,
common/highlights.py (and common/keys.py names every key)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import redis
from rq.serializers import JSONSerializer

from common.settings import Settings

if TYPE_CHECKING:
    from redis.typing import ZSetRangeResponse

SERIALIZER = JSONSerializer


def connect(settings: Settings) -> redis.Redis:
    """A client for `GN_REDIS_URL` with short timeouts, so a dead Redis is noticed, not waited on."""
    return client_for(settings.redis_url)


def client_for(url: str) -> redis.Redis:
    """A client for the Redis at `url`, set up as every process of the box sets it up (`connect`)."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=3,
        socket_timeout=10,
        health_check_interval=30,
        retry_on_timeout=False,
    )


def members(reply: ZSetRangeResponse) -> list[bytes | str]:
    """A ZRANGE-family reply asked without scores: its members."""
    # redis-py types every ZRANGE-family reply as members or (member, score) pairs, whichever was asked.
    return reply  # type: ignore[return-value]


def scored(reply: ZSetRangeResponse) -> list[tuple[bytes | str, float]]:
    """A ZRANGE-family reply asked `withscores=True`: its (member, score) pairs."""
    # As in `members`: redis-py's type does not follow `withscores`.
    return reply  # type: ignore[return-value]


def text(reply: bytes | str, errors: str = "strict") -> str:
    """A member, field or value as text (our clients read bytes; redis-py's types allow str too)."""
    return reply.decode(errors=errors) if isinstance(reply, bytes) else reply


def wait_for_redis(conn: redis.Redis, timeout: float, interval: float = 0.5) -> bool:
    """Ping until Redis answers or `timeout` passes (supervisord start order: wait, don't crash-loop)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return bool(conn.ping())
        except redis.RedisError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)
