"""Restarting the box's programs on purpose (an update, settings set from the fleet) without losing a press.

Programs restart one by one in deploy.control's order (Redis never); when supervisord's own plan would
change (its files, or the environment the launcher gives it: a camera added, more workers), supervisord
itself is asked to exit and systemd starts it again. Meanwhile `keys.restarting` tells the trigger that a
recorder stopping or starting is coming back, so presses are still taken.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import redis

from common import keys
from common.redisconn import connect
from common.settings import Settings
from deploy.control import ControlError, Supervisor, restart_order
from deploy.supervise import PLAN_NAME

# Seconds a fresh supervisord (and its programs) may take to come back.
SUPERVISORD_RETURN = 180.0
# Expiry of the "restarting on purpose" flag (longer than any restart; it is removed after).
RESTART_FLAG_SECONDS = 600


class Restarter:
    """Restarts the programs of one box; `python` runs the launcher of the release to compare plans."""

    def __init__(self, settings: Settings, env_file: Path | None, python: Path, skip: tuple[str, ...] = ()):
        self.settings = settings
        self.env_file = env_file
        self.python = python
        self.skip = skip
        self.supervisor = Supervisor(settings.data_dir / "run" / "supervisor.sock")
        # When each program was last started by this restarter (full name; "*": all at once).
        self.restarted: dict[str, float] = {}

    def restart(self, before_fresh: Callable[[], None] | None = None) -> str:
        """Put every program on what it should run now: one by one, or a fresh supervisord if needed
        (`before_fresh` runs just before supervisord is asked to exit). Raises ControlError."""
        if self.plan_changed():
            old_pid = self.supervisor.pid()
            if before_fresh is not None:
                before_fresh()
            self.supervisor.shutdown()
            self.supervisor.wait_for_new(old_pid, SUPERVISORD_RETURN)
            self.restarted = {"*": time.time()}
            self.wait_started()
            return "supervisord started anew"
        for batch in restart_order(self.supervisor.programs()):
            batch = [p for p in batch if p.group not in self.skip]
            if batch:
                self.supervisor.restart(*batch)
                self.restarted.update((p.full_name, time.time()) for p in batch)
        return "one by one"

    def wait_started(self) -> None:
        """Wait until a fresh supervisord has started its programs (none left STARTING)."""
        deadline = time.monotonic() + SUPERVISORD_RETURN
        while time.monotonic() < deadline:
            with contextlib.suppress(ControlError):
                states = {p.state for p in self.supervisor.programs()}
                if states and "STARTING" not in states:
                    return
            time.sleep(0.5)

    @contextlib.contextmanager
    def on_purpose(self, why: str) -> Iterator[None]:
        """Tell the trigger that recorders stopping or starting now are coming back (keys.restarting)."""
        key = keys.restarting(self.settings.device_id)
        conn = connect(self.settings)
        with contextlib.suppress(redis.RedisError):
            conn.set(key, why, ex=RESTART_FLAG_SECONDS)
        try:
            yield
        finally:
            # After a fresh supervisord, Redis itself restarted: wait for it (its append-only file kept
            # the flag), then lift the flag.
            deadline = time.monotonic() + SUPERVISORD_RETURN
            while time.monotonic() < deadline:
                try:
                    conn.delete(key)
                    break
                except redis.RedisError:
                    time.sleep(0.5)

    def plan_changed(self) -> bool:
        """Whether supervisord's own files or environment would differ if it started now."""
        running = self.settings.data_dir / "run" / PLAN_NAME
        args = ["--env-file", str(self.env_file)] if self.env_file else []
        done = subprocess.run(
            [str(self.python), "-m", "deploy.supervise", *args, "plan"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0 or not running.is_file():
            return True
        return done.stdout.strip() != running.read_text().strip()
