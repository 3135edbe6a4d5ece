"""The long-running listener: inputs → presses → Redis (the journal when Redis fails), plus journal replay.

Inputs call `Listener.on_button(button, at)` from their own threads. That call only maps the button to
cameras and queues the presses (no disk, no network: nothing there can fail and take an input thread
down); one handler thread, `run`, hands them to Redis in order. While Redis does not answer, presses
go to the journal, and the handler retries the journal every REPLAY_SECONDS, oldest first, with the
original press times. If the journal cannot be written either (a full data disk), the press is held in
memory and retried, to Redis or to the journal, until one of them takes it.

No error in the handler ends the loop: it is logged and the loop goes on. An input whose thread dies
anyway calls `input_died`, which stops the listener so that the process exits non-zero and supervisord
starts a fresh one (a live process with a dead input would ignore the button for good).
"""

from __future__ import annotations

import functools
import queue as queue_mod
import re
import threading
from collections.abc import Callable

import redis

from common import journal
from common.journal import PressRecord
from common.log import event, fields, get_logger
from common.settings import Settings
from common.timeutil import iso
from trigger import press as press_mod

log = get_logger(__name__)

REPLAY_SECONDS = 2.0
_NUMBERED = re.compile(r"^BTN_(\d{1,3})$")
# After an unexpected error the handler pauses this long, so a persistent one cannot spin a core.
ERROR_PAUSE_SECONDS = 0.5


class Listener:
    """Maps buttons to cameras and submits presses; `run()` until `stop` is set."""

    def __init__(
        self,
        settings: Settings,
        conn: redis.Redis,
        default: list[str] | None = None,
        on_accept: Callable[[], None] | None = None,
        on_refuse: Callable[[], None] | None = None,
    ) -> None:
        self.settings, self.conn = settings, conn
        self.buttons = press_mod.button_map(settings)
        self.default = default or press_mod.cameras_for(settings, press_mod.ALL)
        self.on_accept = on_accept
        self.on_refuse = on_refuse
        self.stop = threading.Event()
        self.pending: queue_mod.Queue[PressRecord] = queue_mod.Queue()
        self.held: list[PressRecord] = []  # neither Redis nor the journal took them yet
        self.redis_down = False  # the last hand-over failed: journal at once instead of waiting on Redis
        self.died: str | None = None  # why an input thread died (the process then exits non-zero)
        self.outcomes: list[press_mod.Outcome] = []  # for tests and the final log line

    def cameras(self, button: str) -> list[str]:
        """The cameras a button means: GN_BUTTONS, else BTN_<n> → n-th camera, anything else → default."""
        if button in self.buttons:
            return self.buttons[button]
        m = _NUMBERED.match(button)
        if m:
            n = int(m.group(1))
            cams = [c.id for c in self.settings.cameras]
            return [cams[n - 1]] if 1 <= n <= len(cams) else []
        return self.default

    def on_button(self, button: str, at: float, source: str | None = None) -> None:
        """Called by an input with the time taken at the button: queue it for the handler at once."""
        cams = self.cameras(button)
        if not cams:
            event(
                log, "press_unmapped", level=30, button=button, msg="no camera for this button (GN_BUTTONS)"
            )
            return
        src = source or ("serial" if button.startswith("BTN_") else "gpio" if button.isdigit() else button)
        for p in press_mod.make_presses(self.settings, cams, at, src):
            event(log, "press", camera=p.camera, at=iso(at), button=button)
            self.pending.put(p)

    def input_died(self, why: str) -> None:
        """An input's thread ended by an error: stop, so that the process exits and is restarted."""
        self.died = why
        self.stop.set()

    def run(self) -> None:
        """Submit queued presses and retry what Redis did not take, until stopped; then save what is left."""
        self._guarded(self.replay)
        last_retry = 0.0
        while not self.stop.is_set():
            try:
                p = self.pending.get(timeout=0.5)
            except queue_mod.Empty:
                p = None
            if p is not None:
                self._guarded(functools.partial(self.submit, p))
            last_retry += 0.5 if p is None else 0.0
            if last_retry >= REPLAY_SECONDS:
                last_retry = 0.0
                self._guarded(self.retry)
        self._guarded(self.drain)
        try:
            left = len(journal.pending(self.settings.journal_dir))
        except OSError:
            left = -1  # unreadable: the next start says more
        event(log, "listener_stop", left_in_journal=left, not_saved=len(self.held))

    def _guarded(self, step: Callable[[], None]) -> None:
        """Run one step of the loop; an error is logged and the loop goes on (a press is never dropped)."""
        try:
            step()
        except Exception as exc:  # the button must keep working whatever went wrong
            log.exception(
                "listener step failed; going on", extra=fields(event="listener_error", error=str(exc))
            )
            self.stop.wait(ERROR_PAUSE_SECONDS)

    def submit(self, p: PressRecord, check_camera: bool = True) -> None:
        """One press to Redis; if Redis fails, to the journal; if that fails too, held for `retry`."""
        if self.redis_down:
            result = press_mod.keep(self.settings, p, "Redis unavailable a moment ago")
        else:
            result = press_mod.submit(self.settings, self.conn, p, check_camera=check_camera)
        self._answer(result)

    def _answer(self, result: press_mod.Outcome) -> None:
        """Remember the outcome, hold an unsaved press, and show the presser (LED) what happened."""
        self.outcomes.append(result)
        state = result.state
        self.redis_down = state in (press_mod.JOURNALLED, press_mod.NOT_SAVED)
        if state == press_mod.NOT_SAVED:
            self.held.append(result.press)
        if state in (press_mod.SCHEDULED, press_mod.JOURNALLED) and self.on_accept is not None:
            self.on_accept()
        if state in (press_mod.REFUSED, press_mod.NOT_SAVED) and self.on_refuse is not None:
            self.on_refuse()

    def retry(self) -> None:
        """Every REPLAY_SECONDS: presses held in memory, then the journal, if Redis answers now."""
        if not self.held and not journal.pending(self.settings.journal_dir):
            return
        try:
            self.conn.ping()
            self.redis_down = False
        except redis.RedisError:
            self.redis_down = True
        held, self.held = sorted(self.held, key=lambda p: p.at), []
        for p in held:
            # The camera's state now says nothing about a press that waited: the build judges it.
            result = (
                press_mod.keep(self.settings, p, "Redis unavailable")
                if self.redis_down
                else press_mod.submit(self.settings, self.conn, p, check_camera=False)
            )
            self.outcomes.append(result)
            if result.state == press_mod.NOT_SAVED:
                self.held.append(p)
            else:
                event(log, "press_saved", camera=p.camera, at=iso(p.at), state=result.state)
        if not self.redis_down:
            self.replay()

    def replay(self) -> None:
        """Hand the journal to Redis if it has anything and Redis answers."""
        if not journal.pending(self.settings.journal_dir):
            return
        try:
            self.conn.ping()
        except redis.RedisError:
            return
        # Presses still queued in memory are handed over after these, in their own order.
        for result in press_mod.replay(self.settings, self.conn):
            self.outcomes.append(result)

    def drain(self) -> None:
        """At stop: submit what is queued, journal what is held; a press nowhere to keep is logged."""
        while True:
            try:
                self.submit(self.pending.get_nowait())
            except queue_mod.Empty:
                break
        held, self.held = self.held, []
        for p in held:
            result = press_mod.keep(self.settings, p, "listener stopping")
            if result.state == press_mod.NOT_SAVED:
                self.held.append(p)
                event(
                    log,
                    "press_lost",
                    level=50,
                    camera=p.camera,
                    at=iso(p.at),
                    msg=f"press of {p.camera} at {iso(p.at)} could not be kept: "
                    f"press again with `gravanois trigger press --camera {p.camera} --at {iso(p.at)}`",
                )
