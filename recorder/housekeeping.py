"""Housekeeping: retention, the disk alarm and the health hash, in one Redis round trip a pass.

A pass runs whenever segments closed (so they reach the index at once) and at least every
`EVERY` seconds. Its Redis work is one pipeline: index the new segments and write the health hash and,
when retention has work, forget the segments it doomed and read the pins. Retention decides every
`RETAIN_EVERY` seconds (at once while the disk is short of space), so a camera keeps up to about that
much more than GN_BUFFER_SECONDS; deleting in batches keeps the pass that runs every second small.
Deletion is one pass behind the decision, and always in this order (a worker must never be handed a
segment whose file is already gone):

1. pass N decides, with the pins it just read, which segments go (`recorder.retention.plan`);
2. pass N+1 removes them from the index in its round trip, reads the pins again, then deletes the files
   of those still unprotected; one that a press pinned in between is kept and indexed again.

While Redis is down nothing waits for it: the disk guard deletes at once, and nothing goes by age (the
pins are unknown).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from common import journal
from common.alarms import clear_alarm, raise_alarm
from common.fsutil import free_mb
from common.keys import Alarm
from common.log import event, get_logger
from common.segments import Pin, Segment, SegmentIndex
from common.settings import Settings
from recorder import retention
from recorder.health import Health
from recorder.indexer import SegmentIndexer
from recorder.redislink import RedisLink

log = get_logger(__name__)

# Longest time between two passes when no segment closes (camera down): health stays fresh.
EVERY = 1.5
# Retention decides this often (and at every pass while the disk is below its floor).
RETAIN_EVERY = 5.0
# Expired pins (a crashed job's) are removed from Redis this often; in between they are just ignored.
PIN_SWEEP_EVERY = 60.0
# While the disk guard keeps deleting, it says so once, then at most this often (the alarm stays up).
DISK_GUARD_LOG_EVERY = 300.0


class Housekeeper:
    """One camera's retention, disk alarm and health publishing."""

    def __init__(
        self, settings: Settings, camera: str, link: RedisLink, indexer: SegmentIndexer, health: Health
    ) -> None:
        self.settings = settings
        self.camera = camera
        self.link = link
        self.indexer = indexer
        self.health = health
        self.index = SegmentIndex(link.conn, settings.device_id, camera)
        # Looked at every pass (a journalled press pins its window): the path is built once.
        self.journal_dir = settings.journal_dir
        self.pins: list[Pin] = []
        self.swept_at = 0.0
        self.retain_at = 0.0
        # Decided by the last pass: leave the index in the next round trip, then the disk.
        self.doomed: list[Segment] = []
        # Of those, the ones that were protected already (the disk guard's last resort): no second look.
        self.forced: set[Segment] = set()
        # Spared at the last moment by a new pin: indexed again in the next round trip.
        self.reindex: list[Segment] = []
        # None at start: unknown, so an alarm left by an earlier run is cleared once the disk is seen OK.
        self.alarm_up: bool | None = None
        self.low_logged = False
        self.guard_logged_at: float | None = None
        self.guard_deleted = 0
        self.guard_protected = 0

    def sync(self) -> bool:
        """Make the Redis index exactly what is on disk (at start, and when Redis is back)."""
        segments = list(self.indexer.segments)
        self.health.forget()
        return self.link.done(lambda: self.index.replace_all(segments))

    def run(self, added: list[Segment], fields: dict[str, Any], retain: bool = True) -> None:
        """One pass: index `added`, publish health `fields`, apply retention, raise/clear the disk alarm.

        `retain=False` (the last pass, at shutdown) only indexes and publishes: nothing is deleted.
        """
        if self.link.reconnect() and self.sync():
            event(log, "redis_back", camera=self.camera, segments=len(self.indexer.segments))
            added = []  # the resync indexed them
        t = time.time()
        if not retain:
            self.link.call(lambda: self._round_trip(added, None, t, fields))
            return
        doomed, self.doomed = self.doomed, []
        added, self.reindex = [*added, *self.reindex], []
        free = free_mb(self.indexer.path)
        due = t >= self.retain_at or free < self.settings.buffer_min_free_mb
        if not (due or doomed):
            self.link.call(lambda: self._round_trip(added, None, t, fields))
            return
        replies = self.link.call(lambda: self._round_trip(added, doomed, t, fields))
        if replies is not None:
            self.pins = SegmentIndex.pins_from(replies[-1], t)
        windows = retention.windows_from(self.pins, journal.pending(self.journal_dir, self.camera), t)
        if self.link.ok:
            spared = [s for s in doomed if s not in self.forced and retention.protected(s, windows)]
            self.reindex = spared
            doomed = [s for s in doomed if s not in spared]
        self._delete(doomed)
        if due:
            self.retain_at = t + RETAIN_EVERY
            self.retain(t, windows, free)

    def _round_trip(
        self, added: list[Segment], doomed: list[Segment] | None, t: float, fields: dict[str, Any]
    ) -> list[Any]:
        """Index `added`, publish health; with `doomed` (a retention pass), forget them and read the pins."""
        pipe = self.link.conn.pipeline(transaction=False)
        self.index.add(*added, pipe=pipe)
        self.health.queue_publish(pipe, t, **fields)
        if doomed is not None:
            self.index.remove(*doomed, pipe=pipe)
            sweep = t - self.swept_at >= PIN_SWEEP_EVERY
            self.index.read_pins(pipe, sweep=sweep)
            self.swept_at = t if sweep else self.swept_at
        return self.link.execute(pipe)

    def _delete(self, segments: list[Segment]) -> None:
        if segments:
            retention.delete_files(self.indexer.path, segments)
            self.indexer.forget(segments)

    def retain(self, t: float, windows: list[retention.Window], free: float) -> None:
        """Decide what retention deletes (deleted now if Redis is down, else after the next round trip)."""
        plan = retention.plan(
            self.indexer.segments,
            self.indexer.sizes,
            windows,
            t,
            self.settings.buffer_seconds,
            free,
            self.settings.buffer_min_free_mb,
            pins_known=self.link.ok,
        )
        if self.link.ok:
            self.doomed = plan.delete
            self.forced = {s for s in plan.delete if retention.protected(s, windows)}
        else:
            self._delete(plan.delete)
        self._disk_guard(plan, free, t)
        self._disk_alarm(plan.disk_low, free)

    def _disk_guard(self, plan: retention.Plan, free: float, t: float) -> None:
        if not plan.disk_low:
            self.guard_logged_at = None
            return
        self.guard_deleted += plan.by_disk
        self.guard_protected += plan.protected_dropped
        due = self.guard_logged_at is None or t - self.guard_logged_at >= DISK_GUARD_LOG_EVERY
        if due and self.guard_deleted:
            event(
                log,
                "disk_guard",
                logging.WARNING,
                msg=f"the buffer disk is short of space: {self.guard_deleted} segments dropped"
                + ("" if self.guard_logged_at is None else f" in the last {t - self.guard_logged_at:.0f} s")
                + f" ({self.guard_protected} of them pinned by a pending highlight, as a last resort); "
                f"said again at most every {DISK_GUARD_LOG_EVERY:g} s while it lasts",
                camera=self.camera,
                deleted=self.guard_deleted,
                protected_deleted=self.guard_protected,
                free_mb=round(free, 1),
            )
            self.guard_logged_at = t
            self.guard_deleted = self.guard_protected = 0

    def _disk_alarm(self, low: bool, free: float) -> None:
        alarm, cam = Alarm.BUFFER_DISK_LOW, self.camera
        if low:
            message = (
                f"only {free:.0f} MiB free on the buffer disk {self.settings.buffer_dir} "
                f"(floor GN_BUFFER_MIN_FREE_MB={self.settings.buffer_min_free_mb}): the oldest segments "
                "are being dropped, pinned ones too as a last resort; free space or lower GN_BUFFER_SECONDS"
            )
            if not self.low_logged:
                self.low_logged = True
                event(log, "disk_low", logging.WARNING, msg=message, camera=self.camera)
            if self.alarm_up is not True:
                raised = self.link.done(
                    lambda: raise_alarm(self.link.conn, self.settings, alarm, message, cam)
                )
                self.alarm_up = True if raised else self.alarm_up
        else:
            self.low_logged = False
            if self.alarm_up is not False:
                cleared = self.link.done(lambda: clear_alarm(self.link.conn, self.settings, alarm, cam))
                self.alarm_up = not cleared
