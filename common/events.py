"""Events for the fleet: what the recorder, the trigger and the workers tell the company's backend.

A process that causes an event never talks to the broker: it adds the event to a bounded Redis stream
(`keys.events`), in the same round trip as the state change it reports where it can, and the fleet agent
(`gravanois agent`) publishes the stream in order, at least once. A broker that is slow or gone therefore
never delays a press or a recording. When the stream is full the oldest event goes (counted:
`events_dropped`). Nothing is added while no broker is configured (GN_MQTT_URL empty).

The event types and their fields are the fleet contract's (shared/FLEET_API.md).
"""

from __future__ import annotations

import json
import uuid
from enum import StrEnum
from typing import Any

import redis

from common import keys
from common.settings import Settings
from common.timeutil import iso


class EventType(StrEnum):
    """The events the contract names (`type`)."""

    TRIGGER_ACCEPTED = "capture.trigger_accepted"
    TRIGGER_REJECTED = "capture.trigger_rejected"
    HIGHLIGHT_DONE = "highlight.done"
    HIGHLIGHT_FAILED = "highlight.failed"
    HIGHLIGHT_UPLOADED = "highlight.uploaded"
    CAMERA_RECONNECTING = "camera.reconnecting"
    CAMERA_RECONNECTED = "camera.reconnected"
    CAMERA_RESTART_FAILED = "camera.restart_failed"
    STORAGE_LOW = "storage.low"
    STORAGE_OK = "storage.ok"


# Where a press came from (`trigger_source`).
class Source(StrEnum):
    GPIO = "gpio"
    SERIAL = "serial"
    CLI = "cli"
    WEB = "web"
    REMOTE = "remote"


# Adds one event, dropping the oldest (and counting it) when the stream holds `max` already: one atomic
# step, so that two processes adding at once never take the stream past its bound uncounted.
_ADD = """
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then
  redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
end
return redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'event', ARGV[2])
"""


def source_of(value: str) -> str:
    """A press's source as the contract names it (`trigger_source`): '' for one it does not name (a bench)."""
    return value if value in Source.__members__.values() else ""


def make(
    type: EventType,
    camera: str = "",
    trigger_id: str = "",
    trigger_source: str = "",
    reason: str = "",
    at: float | None = None,
    **data: Any,
) -> dict[str, Any]:
    """An event as the stream keeps it: the contract's fields (a fresh `event_id`) and any details."""
    return {
        "type": type.value,
        "event_id": str(uuid.uuid4()),
        "occurred_at": iso(at),
        "camera_id": camera,
        "trigger_id": trigger_id,
        "trigger_source": trigger_source,
        "reason": reason,
        **({"data": data} if data else {}),
    }


def emit(
    target: redis.Redis | redis.client.Pipeline, settings: Settings, type: EventType, **fields: Any
) -> None:
    """Add an event for the fleet agent (on `target`: a connection, or a pipeline being filled)."""
    if not settings.fleet_enabled:
        return
    event = make(type, **fields)
    target.eval(
        _ADD,
        2,
        keys.events(settings.device_id),
        keys.counters(settings.device_id),
        settings.fleet_outbox_max,
        json.dumps(event, ensure_ascii=False),
        keys.Counter.EVENTS_DROPPED.value,
    )
