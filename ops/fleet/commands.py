"""Commands from the fleet (`commands/in`): an allowlist, each signed, answered on `commands/out`.

    press            {"camera": "cam1"}                 a press, as the button's (trigger_source remote)
    requeue_failed   {"job_id": "…"} or {"all": true}   failed jobs back in their queue (`failed requeue`)
    restart_camera   {"camera": "cam1"}                 that camera's recorder restarted
    logs_tail        {"program": "worker-0", "lines": 100}   the last lines of a program's log, redacted
    update           {"source": "0.2.0"}                `gravanois update SOURCE`, rollback included

A command whose signature is not the device's, that names another device, has expired, repeats a
command id already answered (a replay) or names no command of the list is rejected with the reason.
Every accepted command is answered `accepted` at once, then `done` (with its result) or `failed`.
"""

from __future__ import annotations

import subprocess
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import keys
from common.log import redact
from common.redisconn import connect
from common.settings import Settings, live
from common.timeutil import parse_iso
from deploy.control import ControlError, Supervisor
from ops.fleet import contract
from ops.fleet.config import Reason, Refused, check_envelope
from trigger import press as press_mod

# Longest a command id is remembered after its expiry (a replay later than that has expired anyway).
REMEMBER_SECONDS = 7 * 86400
# The most log lines `logs_tail` returns (a message stays small for the broker).
MAX_LOG_LINES = 500
MAX_LOG_BYTES = 60_000


class Commands:
    """Runs the allowlisted commands of one box."""

    def __init__(self, settings: Settings, env_file: Path | None, gravanois: Path) -> None:
        self.settings = settings
        self.env_file = env_file
        self.gravanois = gravanois
        self.conn = connect(settings)
        self.supervisor = Supervisor(settings.data_dir / "run" / "supervisor.sock")
        self.run: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "press": self.press,
            "requeue_failed": self.requeue_failed,
            "restart_camera": self.restart_camera,
            "logs_tail": self.logs_tail,
            "update": self.update,
        }

    def check(self, message: dict[str, Any]) -> None:
        """Refused (with the reason) unless the command is signed, ours, fresh, new and known."""
        check_envelope(self.settings, message, contract.Topic.COMMANDS_IN)
        command_id = message.get("command_id")
        if not isinstance(command_id, str) or not command_id or len(command_id) > 128:
            raise Refused(Reason.MALFORMED, "command_id must be a short string")
        if message.get("name") not in self.run:
            raise Refused("unknown_command", str(message.get("name"))[:64])
        if not isinstance(message.get("args", {}), dict):
            raise Refused(Reason.MALFORMED, "args must be an object")
        try:
            expires = parse_iso(str(message.get("expires_at")))
        except ValueError:
            raise Refused(Reason.MALFORMED, "expires_at is missing or not an ISO 8601 time") from None
        seen = keys.fleet_commands(self.settings.device_id)
        pipe = self.conn.pipeline()
        pipe.zremrangebyscore(seen, "-inf", time.time() - REMEMBER_SECONDS)
        pipe.zadd(seen, {command_id: expires}, nx=True)
        if not pipe.execute()[1]:
            raise Refused(Reason.REPLAY, f"command {command_id[:64]} was answered already")

    # ---- the commands

    def press(self, args: dict[str, Any]) -> dict[str, Any]:
        settings = live(self.settings)
        camera = str(args.get("camera", ""))
        if camera not in {c.id for c in settings.cameras}:
            raise CommandFailed(f"unknown camera {camera[:32]!r}")
        [p] = press_mod.make_presses(settings, [camera], time.time(), "remote")
        outcome = press_mod.submit(settings, self.conn, p)
        result = {"trigger_id": p.press_id, "state": str(outcome.state), "detail": outcome.detail}
        if outcome.state not in (press_mod.SCHEDULED, press_mod.DUPLICATE, press_mod.JOURNALLED):
            raise CommandFailed(outcome.detail or str(outcome.state), result)
        return result

    def requeue_failed(self, args: dict[str, Any]) -> dict[str, Any]:
        cmd = [str(self.gravanois), *self._env_args(), "failed", "requeue"]
        cmd += ["--all"] if args.get("all") is True else [str(args.get("job_id", ""))[:200]]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise CommandFailed(_last_line(done.stderr) or "requeue failed")
        return {"output": _last_line(done.stdout)}

    def restart_camera(self, args: dict[str, Any]) -> dict[str, Any]:
        camera = str(args.get("camera", ""))
        if camera not in {c.id for c in self.settings.cameras}:
            raise CommandFailed(f"unknown camera {camera[:32]!r}")
        name = f"recorder-{camera}"
        try:
            [program] = [p for p in self.supervisor.programs() if p.group == name]
            self.supervisor.restart(program)
        except (ValueError, ControlError) as exc:
            raise CommandFailed(f"could not restart {name}: {exc}") from None
        return {"program": name}

    def logs_tail(self, args: dict[str, Any]) -> dict[str, Any]:
        program = str(args.get("program", ""))
        logs = self.settings.data_dir / "logs"
        known = sorted(p.stem for p in logs.glob("*.log"))
        if program not in known:
            raise CommandFailed(f"no log of {program[:40]!r}; logs: {', '.join(known)}")
        lines = args.get("lines", 100)
        count = lines if isinstance(lines, int) and 0 < lines <= MAX_LOG_LINES else 100
        tail: deque[str] = deque(maxlen=count)
        with open(logs / f"{program}.log", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                tail.append(redact(line.rstrip("\n")))
        while tail and sum(len(x) for x in tail) > MAX_LOG_BYTES:
            tail.popleft()
        return {"program": program, "lines": list(tail)}

    def update(self, args: dict[str, Any]) -> dict[str, Any]:
        source = str(args.get("source", ""))
        if not source:
            raise CommandFailed("args.source names the release: a version, or a wheel's path on the box")
        watch = args.get("watch", 60)
        cmd = [str(self.gravanois), *self._env_args(), "update", source]
        cmd += ["--watch", str(watch if isinstance(watch, (int, float)) and 0 < watch <= 600 else 60)]
        # Its own session: the update restarts this agent among the other programs and must outlive it.
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, start_new_session=True)
        line = _last_line(done.stdout if done.returncode == 0 else done.stderr)
        if done.returncode != 0:
            raise CommandFailed(line.removeprefix("error: "))
        return {"outcome": line}

    def _env_args(self) -> list[str]:
        return ["--env-file", str(self.env_file)] if self.env_file else []


class CommandFailed(Exception):
    """A command that ran and did not do what it was asked: a sentence and any result so far."""

    def __init__(self, reason: str, result: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.result = result or {}


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return redact(lines[-1])[:500] if lines else ""
