"""Talking to the box's running supervisord over its unix socket (supervisor's own XML-RPC interface).

The updater uses it to restart programs one at a time in an order that never loses a press, to ask
supervisord itself to exit when the new release needs a fresh one, and to see each program's state.
"""

from __future__ import annotations

import fnmatch
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import Faults, SupervisorTransport

# Programs restarted after an update, in this order: first, all at once, those no press waits for (the
# web app, the scheduler, the ahead encoder, uploads…); then the workers one at a time (another keeps
# serving), the recorders one at a time (each camera's gap is one restart), and the trigger last (a press
# made while the others restart is taken by the old one). Redis is never restarted by an update: the
# queues, the index and the pins stay where they are.
ONE_BY_ONE = ("worker", "recorder-*", "trigger")
NEVER_RESTARTED = ("redis",)
# Seconds a program may take to reach RUNNING after its start (supervisord's startsecs is 2-3 s).
START_WITHIN = 60.0
# supervisord's states of a program that did not start.
START_FAILED = ("BACKOFF", "FATAL", "EXITED")
# supervisord's fault code for stopping a program that is not running.
NOT_RUNNING = Faults.NOT_RUNNING


class ControlError(Exception):
    """supervisord did not answer or did not do what it was asked: one sentence."""


@dataclass(frozen=True)
class Program:
    """One supervised process as supervisord reports it."""

    group: str
    name: str
    state: str
    pid: int
    started: float

    @property
    def full_name(self) -> str:
        return f"{self.group}:{self.name}"

    @property
    def running(self) -> bool:
        return self.state == "RUNNING"


class Supervisor:
    """The running supervisord of a box, reached through `<run dir>/supervisor.sock`."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket

    def _rpc(self) -> Any:
        transport = SupervisorTransport(None, None, f"unix://{self.socket}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def pid(self) -> int | None:
        """supervisord's pid, or None when it does not answer."""
        try:
            return int(self._rpc().getPID())
        except (OSError, xmlrpc.client.Error):
            return None

    def programs(self) -> list[Program]:
        """Every process supervisord knows, in its own order."""
        try:
            infos = self._rpc().getAllProcessInfo()
        except (OSError, xmlrpc.client.Error) as exc:
            raise ControlError(f"supervisord does not answer at {self.socket}: {exc}") from None
        return [Program(i["group"], i["name"], i["statename"], i["pid"], float(i["start"])) for i in infos]

    def restart(self, *programs: Program) -> None:
        """Stop these programs (each its own stop: a worker finishes its job first), start them all, and
        wait until each one runs; ControlError naming the first that does not."""
        rpc = self._rpc()
        names = [p.full_name for p in programs]
        try:
            for name in names:
                try:
                    rpc.stopProcess(name, True)
                except xmlrpc.client.Fault as exc:
                    if exc.faultCode != NOT_RUNNING:  # a program that crashed has nothing to stop
                        raise
            for name in names:
                rpc.startProcess(name, False)
            deadline = time.monotonic() + START_WITHIN
            while waiting := [n for n in names if rpc.getProcessInfo(n)["statename"] != "RUNNING"]:
                failed = [n for n in waiting if rpc.getProcessInfo(n)["statename"] in START_FAILED]
                if failed or time.monotonic() > deadline:
                    name = (failed or waiting)[0]
                    raise ControlError(
                        f"{name} did not start again ({rpc.getProcessInfo(name)['statename']})"
                    )
                time.sleep(0.2)
        except xmlrpc.client.Fault as exc:
            raise ControlError(f"{', '.join(names)} did not start again: {exc.faultString}") from None
        except OSError as exc:
            raise ControlError(
                f"supervisord stopped answering while restarting {', '.join(names)}: {exc}"
            ) from None

    def shutdown(self) -> None:
        """Ask supervisord to stop every program in order and exit (systemd then starts it again)."""
        try:
            self._rpc().shutdown()
        except (OSError, xmlrpc.client.Error) as exc:
            raise ControlError(f"supervisord did not accept the shutdown: {exc}") from None

    def wait_for_new(self, old_pid: int | None, timeout: float) -> int:
        """Wait until a supervisord other than `old_pid` answers; its pid."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.pid()
            if pid is not None and pid != old_pid:
                return pid
            time.sleep(0.5)
        raise ControlError(f"no supervisord came back within {timeout:g} s (is the systemd unit enabled?)")


def restart_order(programs: list[Program]) -> list[list[Program]]:
    """The programs an update restarts, as batches restarted in turn: every program not in
    ONE_BY_ONE together first, then those of ONE_BY_ONE one at a time in its order."""
    # Every program supervisord should be running (a crashed one too: it must run the target release),
    # not those left stopped on purpose (autostart=false).
    eligible = [p for p in programs if p.group not in NEVER_RESTARTED and p.state != "STOPPED"]

    def rank(p: Program) -> int:
        found = [i for i, pattern in enumerate(ONE_BY_ONE) if fnmatch.fnmatch(p.group, pattern)]
        return found[0] if found else -1

    first = [p for p in eligible if rank(p) < 0]
    rest = sorted((p for p in eligible if rank(p) >= 0), key=lambda p: (rank(p), p.full_name))
    return ([first] if first else []) + [[p] for p in rest]
