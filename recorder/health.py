"""The recorder's health in Redis: its verdict on its camera, read through common.verdict (contract:
keys.camera_health)."""

from __future__ import annotations

from typing import Any

import redis

from common import keys
from common.counters import incr
from common.events import EventType, emit
from common.log import redact
from common.settings import Settings

RESTARTS_KEPT_SECONDS = 86400.0
# Between two full writes of the health hash only the fields that changed are sent (a recorder's own
# CPU is mostly Redis client work); a full write this often repairs a hash that Redis lost unnoticed.
FULL_PUBLISH_EVERY = 60.0


class Health:
    """Publishes one camera's health hash, its restarts and the device counters. Raises RedisError."""

    def __init__(self, conn: redis.Redis, settings: Settings, camera: str, source: str, mode: str) -> None:
        self.conn = conn
        self.settings = settings
        self.camera = camera
        self.key = keys.camera_health(settings.device_id, camera)
        self.fixed = {"source": redact(source), "mode": mode}
        # What the hash holds, as far as this process knows; empty: write it all.
        self.published: dict[str, str] = {}
        self.full_at = 0.0

    def queue_publish(self, pipe: redis.client.Pipeline, t: float, **fields: Any) -> None:
        """Queue on `pipe` (the recorder's one round trip a second) the health hash's fields (all as text)
        and, in a full write, the camera's entry in the set `status` reads."""
        mapping = {**self.fixed, **fields, "updated_at": t}
        text = {k: ("" if v is None else str(v)) for k, v in mapping.items()}
        if text.get("last_error"):
            text["last_error"] = redact(text["last_error"])
        if not self.published or t - self.full_at >= FULL_PUBLISH_EVERY:
            pipe.sadd(keys.cameras(self.settings.device_id), self.camera)
            # redis-py types `mapping` as a Mapping invariant in its key type: it refuses a dict[str, str].
            pipe.hset(self.key, mapping=text)  # type: ignore[arg-type]
            self.full_at = t
        else:
            pipe.hset(self.key, mapping={k: v for k, v in text.items() if self.published.get(k) != v})
        self.published = text

    def forget(self) -> None:
        """Redis may have lost the hash (it was unreachable): the next publish writes it all."""
        self.published = {}

    def restarted(self, t: float) -> None:
        """Note an ffmpeg restart: the restarts ZSET (last day kept) and the device counter."""
        key = keys.camera_restarts(self.settings.device_id, self.camera)
        pipe = self.conn.pipeline()
        pipe.zadd(key, {f"{t:.3f}": t})
        pipe.zremrangebyscore(key, "-inf", t - RESTARTS_KEPT_SECONDS)
        pipe.execute()
        incr(self.conn, self.settings, keys.Counter.FFMPEG_RESTARTS)

    def stalled(self) -> None:
        """Count a stall the watchdog caught."""
        incr(self.conn, self.settings, keys.Counter.STALLS)

    def tell_fleet(self, type: EventType, reason: str = "") -> None:
        """Add a camera event for the fleet agent (common.events)."""
        emit(self.conn, self.settings, type, camera=self.camera, reason=redact(reason))
