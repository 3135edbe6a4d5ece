"""The agent's side of the events stream (common/events.py): what the broker has not acknowledged yet.

The stream keeps every event until the broker acknowledges it (PUBACK, QoS 1); then the agent notes the
entry's id (`keys.events_sent`) and deletes it, in one round trip. So what is unacknowledged survives the
agent's restarts and, with Redis's append-only file, Redis's too, and it is sent again in order. An event
the broker acknowledged but whose note the agent had no time to write (killed in between) is sent again
once by the next agent: consumers de-duplicate on `event_id`, as the contract says.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from common import keys
from common.redisconn import text


class Outbox:
    """One device's events stream, read in order after the last acknowledged entry."""

    def __init__(self, conn: redis.Redis, device: str) -> None:
        self.conn = conn
        self.stream = keys.events(device)
        self.sent_key = keys.events_sent(device)

    def next(self) -> tuple[str, dict[str, Any]] | None:
        """The oldest event not yet acknowledged (its entry id and the event), or None."""
        last = text(self.conn.get(self.sent_key) or b"") or "0-0"
        entries = self.conn.xrange(self.stream, min=f"({last}", count=1)
        if not entries:
            return None
        entry_id, fields = entries[0]
        raw = (fields or {}).get(b"event") or (fields or {}).get("event") or b"{}"
        try:
            event = json.loads(raw)
        except ValueError:
            event = {}
        return text(entry_id or b""), event if isinstance(event, dict) else {}

    def acknowledged(self, entry_id: str) -> None:
        """The broker has it: remember that and forget the entry."""
        pipe = self.conn.pipeline()
        pipe.set(self.sent_key, entry_id)
        pipe.xdel(self.stream, entry_id)
        pipe.execute()

    def size(self) -> int:
        """Events waiting (the presence's `queue_size`)."""
        return int(self.conn.xlen(self.stream))
