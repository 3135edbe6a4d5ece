"""The Redis connection, the RQ queues (JSON serializer, never pickle), counters and alarms."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis
from rq.serializers import JSONSerializer

from common import keys
from common.log import event, get_logger
from common.settings import Settings
from common.timeutil import iso

if TYPE_CHECKING:
    from redis.typing import ZSetRangeResponse

log = get_logger(__name__)

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


def incr(conn: redis.Redis, settings: Settings, counter: keys.Counter, amount: int = 1) -> None:
    """Add to one of the device's counters; Redis errors ignored."""
    with contextlib.suppress(redis.RedisError):
        conn.hincrby(keys.counters(settings.device_id), counter, amount)


def raise_alarm(
    conn: redis.Redis, settings: Settings, alarm: keys.Alarm, message: str, camera: str | None = None
) -> None:
    """Set an alarm (of the box, or of one `camera`) that `gravanois status` shows until `clear_alarm`."""
    key, name = keys.alarms(settings.device_id), keys.alarm_name(alarm, camera)
    if conn.hget(key, name) is None:
        conn.hset(key, name, json.dumps({"message": message, "since": iso()}))


def clear_alarm(conn: redis.Redis, settings: Settings, alarm: keys.Alarm, camera: str | None = None) -> None:
    """Remove an alarm once its cause is gone."""
    conn.hdel(keys.alarms(settings.device_id), keys.alarm_name(alarm, camera))


def note_highlight(conn: redis.Redis, settings: Settings, press_id: str, at: float, **state: str) -> None:
    """Record a highlight's fields for `status` and the web app (`state` is a pipeline.HighlightState)."""
    key = keys.highlight(settings.device_id, press_id)
    pipe = conn.pipeline()
    pipe.hset(key, mapping={**{k: str(v) for k, v in state.items()}, "updated_at": iso()})
    pipe.expire(key, int(settings.keep_highlights_days * 86400))
    pipe.zadd(keys.highlights(settings.device_id), {press_id: at})
    pipe.zremrangebyrank(keys.highlights(settings.device_id), 0, -settings.keep_highlights_max - 1)
    pipe.execute()


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
