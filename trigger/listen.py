"""The long-running listener: inputs → presses (journalled at the button) → Redis, plus journal replay.

Inputs call `Listener.press(button, at)` from their own threads. That call maps the button to cameras
and journals each press at once (a file write: no Redis, no waiting), then queues it; one handler
thread hands presses to Redis in order. While the journal is not empty (Redis was down) the handler
retries it every REPLAY_SECONDS, oldest first, with the original press times.
"""

from __future__ import annotations

import queue as queue_mod
import re
import threading
from collections.abc import Callable

import redis

from common import journal
from common.journal import Press
from common.log import event, get_logger
from common.settings import Settings
from common.timeutil import iso
from trigger import press as press_mod

log = get_logger(__name__)

REPLAY_SECONDS = 2.0
_NUMBERED = re.compile(r"^BTN_(\d{1,3})$")


class Listener:
    """Maps buttons to cameras, journals and submits presses; `run()` until `stop` is set."""

    def __init__(
        self,
        settings: Settings,
        conn: redis.Redis,
        default: list[str] | None = None,
        on_accept: Callable[[], None] | None = None,
    ) -> None:
        self.settings, self.conn = settings, conn
        self.buttons = press_mod.button_map(settings)
        self.default = default or press_mod.cameras_for(settings, press_mod.ALL)
        self.on_accept = on_accept
        self.stop = threading.Event()
        self.pending: queue_mod.Queue[Press] = queue_mod.Queue()
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

    def press(self, button: str, at: float, source: str | None = None) -> None:
        """Called by an input with the time taken at the button: journal now, hand to Redis soon."""
        cams = self.cameras(button)
        if not cams:
            event(
                log, "press_unmapped", level=30, button=button, msg="no camera for this button (GN_BUTTONS)"
            )
            return
        src = source or ("serial" if button.startswith("BTN_") else "gpio" if button.isdigit() else button)
        for p in press_mod.make_presses(self.settings, cams, at, src):
            journal.write(self.settings.journal_dir, p)
            event(log, "press", camera=p.camera, at=iso(at), button=button)
            self.pending.put(p)

    def run(self) -> None:
        """Submit queued presses and replay the journal until stopped; queued presses stay journalled."""
        self.replay()
        last_replay = 0.0
        while not self.stop.is_set():
            try:
                p = self.pending.get(timeout=0.5)
            except queue_mod.Empty:
                p = None
            if p is not None:
                self.submit(p)
            last_replay += 0.5 if p is None else 0.0
            if last_replay >= REPLAY_SECONDS:
                last_replay = 0.0
                self.replay()
        event(log, "listener_stop", left_in_journal=len(journal.pending(self.settings.journal_dir)))

    def submit(self, p: Press) -> None:
        """One press to Redis (journalled by `press`, so a Redis error just leaves it there)."""
        result = press_mod.submit(self.settings, self.conn, p)
        self.outcomes.append(result)
        if result.state == press_mod.SCHEDULED and self.on_accept is not None:
            self.on_accept()

    def replay(self) -> None:
        """Hand the journal to Redis if it has anything and Redis answers."""
        if not journal.pending(self.settings.journal_dir):
            return
        try:
            self.conn.ping()
        except redis.RedisError:
            return
        # Presses still queued in memory are in the journal too: replay takes them in time order,
        # and their own later submit is then a no-op (same job id).
        for result in press_mod.replay(self.settings, self.conn):
            self.outcomes.append(result)
            if result.state == press_mod.SCHEDULED and self.on_accept is not None:
                self.on_accept()
