"""The device's alarms in Redis (`keys.alarms`): raised by whoever sees a cause, shown by `gravanois status`
until that same code clears them. A storage alarm raised or cleared is a fleet event (storage.low, .ok)."""

from __future__ import annotations

import json

import redis

from common import keys
from common.events import EventType, emit
from common.settings import Settings
from common.timeutil import iso


def raise_alarm(
    conn: redis.Redis, settings: Settings, alarm: keys.Alarm, message: str, camera: str | None = None
) -> None:
    """Set an alarm (of the box, or of one `camera`) that `gravanois status` shows until `clear_alarm`."""
    key, name = keys.alarms(settings.device_id), keys.alarm_name(alarm, camera)
    if conn.hget(key, name) is None:
        conn.hset(key, name, json.dumps({"message": message, "since": iso()}))
        if alarm in keys.STORAGE_ALARMS:
            emit(conn, settings, EventType.STORAGE_LOW, camera=camera or "", reason=message, alarm=name)


def clear_alarm(conn: redis.Redis, settings: Settings, alarm: keys.Alarm, camera: str | None = None) -> None:
    """Remove an alarm once its cause is gone."""
    name = keys.alarm_name(alarm, camera)
    if conn.hdel(keys.alarms(settings.device_id), name) and alarm in keys.STORAGE_ALARMS:
        emit(conn, settings, EventType.STORAGE_OK, camera=camera or "", alarm=name)
