"""Each highlight's state in Redis (`keys.highlight`, a hash per press id, and the `keys.highlights` index):
written by the trigger and the worker stages, read by `gravanois status` and the web app."""

from __future__ import annotations

import redis

from common import keys
from common.settings import Settings
from common.timeutil import iso


def note_highlight(conn: redis.Redis, settings: Settings, press_id: str, at: float, **state: str) -> None:
    """Record a highlight's fields for `status` and the web app (`state` is a pipeline.HighlightState)."""
    key = keys.highlight(settings.device_id, press_id)
    pipe = conn.pipeline()
    pipe.hset(key, mapping={**{k: str(v) for k, v in state.items()}, "updated_at": iso()})
    pipe.expire(key, int(settings.keep_highlights_days * 86400))
    pipe.zadd(keys.highlights(settings.device_id), {press_id: at})
    pipe.zremrangebyrank(keys.highlights(settings.device_id), 0, -settings.keep_highlights_max - 1)
    pipe.execute()
