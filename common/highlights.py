"""Each highlight's state in Redis (`keys.highlight`, a hash per press id, and the `keys.highlights` index):
written by the trigger and the worker stages, read by `gravanois status` and the web app. A change the
fleet hears of (accepted, refused, done, failed, uploaded) is added to the events stream in the same round
trip (common.events), with the press's source as the trigger recorded it."""

from __future__ import annotations

import redis

from common import events, ids, keys
from common.redisconn import text
from common.settings import Settings
from common.timeutil import iso


def note_highlight(
    conn: redis.Redis,
    settings: Settings,
    press_id: str,
    at: float,
    event: events.EventType | None = None,
    reason: str = "",
    **state: str,
) -> None:
    """Record a highlight's fields for `status` and the web app (`state` is a pipeline.HighlightState);
    `event`: the fleet event this change is (`reason`: why, for a refusal or a failure)."""
    key = keys.highlight(settings.device_id, press_id)
    pipe = conn.pipeline()
    if event is not None and settings.fleet_enabled:
        source = state.get("source") or text(conn.hget(key, "source") or b"")
        camera = (ids.parse_press_id(press_id) or ("", 0.0))[0]
        events.emit(
            pipe, settings, event, camera=camera, trigger_id=press_id, trigger_source=source, reason=reason
        )
    pipe.hset(key, mapping={**{k: str(v) for k, v in state.items()}, "updated_at": iso()})
    pipe.expire(key, int(settings.keep_highlights_days * 86400))
    pipe.zadd(keys.highlights(settings.device_id), {press_id: at})
    pipe.zremrangebyrank(keys.highlights(settings.device_id), 0, -settings.keep_highlights_max - 1)
    pipe.execute()
