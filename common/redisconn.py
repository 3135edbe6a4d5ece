"""The Redis connection, the RQ queues (JSON serializer, never pickle), counters and alarms."""

from __future__ import annotations

import contextlib
import json
import time

import redis
from rq.serializers import JSONSerializer

from common import keys
from common.settings import Settings
from common.timeutil import iso

SERIALIZER = JSONSerializer


def connect(settings: Settings) -> redis.Redis:
    """A client for `GN_REDIS_URL` with short timeouts, so a dead Redis is noticed, not waited on."""
    return redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=3,
        socket_timeout=10,
        health_check_interval=30,
        retry_on_timeout=False,
    )


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


def incr(conn: redis.Redis, settings: Settings, counter: str, amount: int = 1) -> None:
    """Add to one of the device's counters (presses, clips_built, renders_ok, …); Redis errors ignored."""
    with contextlib.suppress(redis.RedisError):
        conn.hincrby(keys.counters(settings.device_id), counter, amount)


def raise_alarm(conn: redis.Redis, settings: Settings, name: str, message: str) -> None:
    """Set an alarm that `gravanois status` shows until `clear_alarm`."""
    key = keys.alarms(settings.device_id)
    if conn.hget(key, name) is None:
        conn.hset(key, name, json.dumps({"message": message, "since": iso()}))


def clear_alarm(conn: redis.Redis, settings: Settings, name: str) -> None:
    """Remove an alarm once its cause is gone."""
    conn.hdel(keys.alarms(settings.device_id), name)


def note_highlight(conn: redis.Redis, settings: Settings, press_id: str, at: float, **state: str) -> None:
    """Record a highlight's fields for `status` and the web app (`state` is a pipeline.HighlightState)."""
    key = keys.highlight(settings.device_id, press_id)
    pipe = conn.pipeline()
    pipe.hset(key, mapping={**{k: str(v) for k, v in state.items()}, "updated_at": iso()})
    pipe.expire(key, int(settings.keep_highlights_days * 86400))
    pipe.zadd(keys.highlights(settings.device_id), {press_id: at})
    pipe.zremrangebyrank(keys.highlights(settings.device_id), 0, -settings.keep_highlights_max - 1)
    pipe.execute()
