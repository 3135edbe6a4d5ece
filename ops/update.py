"""`gravanois update`: a new release installed beside the running one, switched to, proven, or undone.

    gravanois update SOURCE        a wheel, a checkout folder, or a version on the package index
    gravanois update --rollback    back to the previous release (the same switch, restart and watch)
    gravanois update --status      the releases and the last update's outcome

The steps, and what a power cut or a killed updater at each one leaves (boot.sh undoes any switch that
was not committed, at the next start of the box):

    fetch    the wheel (built here from a folder)              nothing changed
    install  releases/<id>: a venv from the release's lock     an unfinished folder, removed next time
    check    every module imports, --version, the settings     a release never switched to
    trial    update.state: trial, from, to                     the old release (boot.sh)
    switch   the `current` link, atomically                    the old release (boot.sh)
    restart  each program in RESTART_ORDER, Redis never        the old release (boot.sh)
    watch    health for --watch seconds                        the old release (boot.sh)
    commit   `previous`; update.state: committed                the new release once written
    prune    releases but current, previous (and supervisord's)  the new release

This follows the commit/rollback model of Mender and RAUC (an update is on trial until the device,
running it, says it is healthy; a device that restarts before that falls back), applied to a release
folder instead of a root file system partition (see docs/pi.md for why neither is used as is).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from common.cli import fail, settings_from
from common.log import event, get_logger
from common.pipeline import STAGES
from common.redisconn import connect
from common.segments import SegmentIndex
from common.settings import Settings
from common.timeutil import iso
from deploy import release as rel
from deploy.control import ControlError, Program
from ops.attention import backlog
from ops.restart import Restarter

log = get_logger(__name__)

STEPS = ("fetch", "install", "check", "trial", "switch", "restart", "watch", "commit", "prune")
# A test aid: the updater stops at this step and waits there (to be killed), as a power cut would find it.
PAUSE_ENV = "GN_UPDATE_PAUSE_AT"
# Seconds of health watched after the restart before an update is committed.
WATCH_SECONDS = 60.0
# Seconds between two looks at the box's health during the watch.
WATCH_EVERY = 2.0


@dataclass
class Health:
    """What the updater compares before and after: programs, cameras and `status`'s problems."""

    programs: dict[str, Program] = field(default_factory=dict)
    cameras: dict[str, dict[str, Any]] = field(default_factory=dict)
    attention: set[str] = field(default_factory=set)
    # Per stage, the jobs its workers have finished (done or failed for good), from `status`'s counters.
    finished: dict[str, int] = field(default_factory=dict)
    error: str | None = None


class UpdateFailed(Exception):
    """An update that did not take; the box is back on (or never left) the old release."""


class Updater:
    """One update (or rollback) of an installed box."""

    def __init__(
        self, settings: Settings, env_file: Path | None, layout: rel.Layout, watch: float, python: str
    ):
        self.settings = settings
        self.env_file = env_file
        self.layout = layout
        self.watch_seconds = watch
        self.python = python
        self.restarter = Restarter(settings, env_file, layout.root / "current" / "bin" / "python")
        self.supervisor = self.restarter.supervisor
        # The release every program must run by the end of the watch.
        self.target: str | None = None

    # ------------------------------------------------------------ the whole update

    def update(self, source: str) -> str:
        """Install, check, switch to, restart into and prove `source`'s release; the operator's message."""
        with self.layout.locked():
            self.recover()
            old = self.layout.link("current")
            if old is None:
                raise UpdateFailed("this box has no current release: install it with deploy/install.sh first")
            self.layout.remove_unfinished()
            with tempfile.TemporaryDirectory(prefix="gn-update-") as tmp:
                self.step("fetch")
                wheel = rel.fetch(source, Path(tmp), sys.executable)
                self.step("install")
                new = rel.install(self.layout, wheel, self.python)
            if new.id == old:
                return f"release {new.id} is already the one running: nothing to do"
            self.step("check")
            problem = rel.check(new, self.env_file)
            if problem:
                raise UpdateFailed(f"update to {new.id} refused: {problem}; still on {old}")
            return self.switch_and_prove(old, new.id, "update")

    def rollback(self) -> str:
        """Back to the previous release, proven like an update."""
        with self.layout.locked():
            self.recover()
            old, target = self.layout.link("current"), self.layout.link("previous")
            if old is None or target is None or not self.layout.complete(target) or target == old:
                raise UpdateFailed("there is no previous release to go back to")
            return self.switch_and_prove(old, target, "rollback")

    def switch_and_prove(self, old: str, new: str, what: str) -> str:
        """The trial: switch, restart, watch; committed when healthy, else undone (UpdateFailed)."""
        baseline = self.health()
        if baseline.error:
            raise UpdateFailed(
                f"{what} to {new} not started: the box is not answering ({baseline.error}); still on {old}"
            )
        self.step("trial")
        self.layout.state.write(
            phase="trial", kind=what, **{"from": old, "to": new}, started=iso(time.time())
        )
        self.step("switch")
        switched = time.time()
        self.target = new
        self.layout.point("current", new)
        event(log, "update_switched", old=old, new=new)
        # Until the new release (or, failing it, the old one again) has proven itself, a recorder that is
        # stopping or starting is restarting on purpose: presses are still taken (trigger.press).
        with self.restarter.on_purpose(f"update to {new}"):
            try:
                self.step("restart")
                how = self.restart()
                self.step("watch")
                problem = self.watch(baseline, self.watch_seconds)
            except ControlError as exc:
                how, problem = "restart", str(exc)
            if problem:
                return self.undo(old, new, what, problem, baseline)
        self.step("commit")
        self.layout.point("previous", old)
        self.layout.state.write(phase="committed", kind=what, **{"from": old, "to": new}, at=iso(time.time()))
        self.step("prune")
        pruned = self.layout.prune({new, old, *self.supervisord_release()})
        gaps = self.recording_gaps(switched - 5.0)
        event(log, "update_committed", old=old, new=new, restart=how, gaps=gaps, pruned=pruned)
        gap_text = ", ".join(f"{cam} {gap:.1f} s" for cam, gap in gaps.items()) or "none measured"
        took = time.time() - switched
        return (
            f"{what} to {new} done: switched from {old}, programs restarted ({how}), healthy for "
            f"{self.watch_seconds:g} s, {took:.0f} s in all; longest recording gap: {gap_text}"
        )

    def undo(self, old: str, new: str, what: str, problem: str, baseline: Health) -> str:
        """Back to `old` after a failed trial of `new`; raises UpdateFailed with one line either way."""
        event(log, "update_rolling_back", level=40, old=old, new=new, problem=problem)
        self.layout.state.write(phase="rolling_back", kind=what, **{"from": old, "to": new}, reason=problem)
        self.target = old
        self.layout.point("current", old)
        again: str | None
        try:
            self.restart()
            again = self.watch(baseline, self.watch_seconds)
        except ControlError as exc:
            again = str(exc)
        self.layout.state.write(
            phase="rolled_back", kind=what, **{"from": old, "to": new}, reason=problem, at=iso(time.time())
        )
        self.layout.prune(
            {old, new, *filter(None, [self.layout.link("previous")]), *self.supervisord_release()}
        )
        if again:
            raise UpdateFailed(
                f"{what} to {new} failed ({problem}); back on {old}, which is not healthy either: {again}"
            )
        raise UpdateFailed(f"{what} to {new} failed ({problem}); rolled back to {old}, healthy")

    def recover(self) -> None:
        """Finish what a killed updater left half-way (the box kept running): back to where it was."""
        state = self.layout.state.unfinished()
        if state is None:
            return
        old, new = state.get("from", ""), state.get("to", "")
        if not self.layout.complete(old):
            return
        event(log, "update_recovering", level=30, old=old, new=new, phase=state["phase"])
        self.layout.state.write(
            phase="rolling_back",
            kind=state.get("kind", "update"),
            **{"from": old, "to": new},
            reason="the updater stopped before the release proved itself",
        )
        self.layout.point("current", old)
        with self.restarter.on_purpose(f"back to {old}"), contextlib.suppress(ControlError):
            self.restart()
        self.layout.state.write(
            phase="rolled_back",
            kind=state.get("kind", "update"),
            **{"from": old, "to": new},
            reason="the updater stopped before the release proved itself",
            at=iso(time.time()),
        )

    # ------------------------------------------------------------ restarting

    def restart(self) -> str:
        """Put the programs on the release `current` names (boot.sh lets one requested start through)."""

        def one_start_expected() -> None:
            self.layout.state.write(**{**self.layout.state.read(), "restart": "requested"})

        return self.restarter.restart(before_fresh=one_start_expected)

    def supervisord_release(self) -> list[str]:
        """The release supervisord itself runs from (kept by prune while it runs), if it can be told."""
        pid = self.supervisor.pid()
        runs = release_of(pid) if pid is not None else None
        return [runs] if runs else []

    # ------------------------------------------------------------ health

    def health(self) -> Health:
        """Programs (from supervisord) and cameras and problems (from the current release's `status`)."""
        h = Health()
        try:
            h.programs = {p.full_name: p for p in self.supervisor.programs()}
        except ControlError as exc:
            h.error = str(exc)
            return h
        args = ["--env-file", str(self.env_file)] if self.env_file else []
        status = [str(self.layout.root / "current" / "bin" / "gravanois"), *args, "status", "--json"]
        try:
            done = subprocess.run(status, capture_output=True, text=True, timeout=120)
            snap = json.loads(done.stdout)
        except (subprocess.TimeoutExpired, ValueError) as exc:
            h.error = f"`gravanois status` of the release does not answer: {rel.last_line(str(exc))}"
            return h
        if done.returncode not in (0, 1):
            h.error = f"`gravanois status` of the release fails: {rel.last_line(done.stderr)}"
            return h
        h.cameras = {c["id"]: c for c in snap["cameras"]}
        h.attention = {without_numbers(line) for line in snap["attention"]}
        counters = snap.get("counters", {})
        h.finished = {
            stage: counters.get(spec.done_counter, 0) + counters.get(spec.failed_counter, 0)
            for stage, spec in STAGES.items()
        }
        return h

    def problem(self, before: Health, now: Health, first: Health | None = None) -> str | None:
        """The first thing healthy before the switch that is not healthy now (None: all is well).

        A queue that filled up while the programs restarted is not a problem of the new release as long as
        its workers work it down: a stage that finished jobs since the `first` look of the watch may be
        backed up (rolling back would only restart everything again and grow the backlog).
        """
        if now.error:
            return now.error
        for name, p in before.programs.items():
            after = now.programs.get(name)
            if p.running and (after is None or not after.running):
                return f"program {name} is {after.state if after else 'gone'}"
        if self.layout.link("current") != self.target:
            return f"the box went back to {self.layout.link('current')} at its start"
        for name, p in now.programs.items():
            runs = release_of(p.pid)
            if p.running and runs and runs != self.target:
                return f"program {name} still runs release {runs}"
        for cam, c in before.cameras.items():
            seen = now.cameras.get(cam, {})
            if c.get("recording") and not seen.get("recording"):
                return f"camera {cam} is not recording"
            since = self.restarter.restarted.get(
                f"recorder-{cam}:recorder-{cam}", self.restarter.restarted.get("*")
            )
            age = seen.get("last_segment_age")
            if c.get("recording") and since and (age is None or time.time() - age < since):
                return f"camera {cam} has recorded nothing since its recorder restarted"
        working = {
            without_numbers(backlog(stage, 0))
            for stage in STAGES
            if first is not None and now.finished.get(stage, 0) > first.finished.get(stage, 0)
        }
        new = sorted(now.attention - before.attention - working)
        return f"status: {new[0]}" if new else None

    def watch(self, before: Health, seconds: float) -> str | None:
        """Watch health for `seconds`: None if all is well at the end and nothing restarted since it was."""
        deadline = time.monotonic() + seconds
        steady: dict[str, int] | None = None
        first: Health | None = None
        while True:
            now = self.health()
            first = first or (None if now.error else now)
            problem = self.problem(before, now, first)
            pids = {name: p.pid for name, p in now.programs.items()}
            if problem is None and steady is not None:
                crashed = [name for name, pid in steady.items() if pids.get(name) != pid]
                if crashed:
                    return f"program {crashed[0]} restarted during the watch (it crashed)"
            steady = pids if problem is None else None
            if time.monotonic() >= deadline:
                return problem
            time.sleep(WATCH_EVERY)

    def recording_gaps(self, since: float) -> dict[str, float]:
        """Per camera, the longest stretch without a segment since `since` (what the restart cost)."""
        gaps: dict[str, float] = {}
        with contextlib.suppress(Exception):
            conn = connect(self.settings)
            for cam in self.settings.cameras:
                segs = SegmentIndex(conn, self.settings.device_id, cam.id).covering(since, time.time())
                gaps[cam.id] = max((b.start - a.end for a, b in itertools.pairwise(segs)), default=0.0)
        return gaps

    # ------------------------------------------------------------ test aid

    def step(self, name: str) -> None:
        """Log the step; stop here (until killed) when GN_UPDATE_PAUSE_AT names it."""
        event(log, "update_step", step=name)
        if os.environ.get(PAUSE_ENV) == name:
            print(f"paused at {name}", file=sys.stderr, flush=True)
            signal.pause()


def without_numbers(sentence: str) -> str:
    """A `status` sentence with its numbers (ages, counts) as `#`: they change from one look to the next."""
    return re.sub(r"\d+(\.\d+)?", "#", sentence)


def release_of(pid: int) -> str | None:
    """The release a process runs from: its interpreter's path (argv[0], from the script's #!) names it."""
    with contextlib.suppress(OSError):
        for arg in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2]:
            found = re.search(rb"/releases/([^/]+)/", arg)
            if found:
                return found[1].decode()
    return None


# ---------------------------------------------------------------- the command


def describe(layout: rel.Layout) -> str:
    """The releases and the last update's outcome, for `--status`."""
    state = layout.state.read()
    lines = [
        f"current:  {layout.link('current') or '-'}",
        f"previous: {layout.link('previous') or '-'}",
        f"installed: {', '.join(layout.installed()) or '-'}",
    ]
    if state:
        lines.append("last update: " + ", ".join(f"{k}={v}" for k, v in state.items()))
    return "\n".join(lines)


@click.command()
@click.argument("source", required=False)
@click.option("--rollback", is_flag=True, help="Go back to the previous release.")
@click.option("--status", "show", is_flag=True, help="Show the releases and the last update's outcome.")
@click.option(
    "--watch",
    default=WATCH_SECONDS,
    show_default=True,
    help="Seconds of health (every program running, every camera recording, `status` clean) before "
    "the new release is kept.",
)
@click.option(
    "--root", type=click.Path(file_okay=False, path_type=Path), help="Install root (default: this release's)."
)
@click.option(
    "--python",
    default=rel.DEFAULT_PYTHON,
    show_default=True,
    help="The Python new releases' venvs are made with.",
)
@click.pass_context
def update(
    ctx: click.Context,
    source: str | None,
    rollback: bool,
    show: bool,
    watch: float,
    root: Path | None,
    python: str,
) -> None:
    """Install a release beside the running one and switch to it, or go back.

    SOURCE is a wheel, a checkout folder, or a version on the package index. The box keeps running and
    recording; presses during the update are taken (journalled if need be) and built. If any program
    does not run, a camera stops recording or `status` finds a new problem within --watch seconds, the
    box goes back to the release it ran by itself. Exit 0: the new release runs; 1: it does not.
    """
    settings = settings_from(ctx, process="update")
    layout = rel.Layout(root) if root else rel.Layout.running()
    if layout is None:
        fail(
            "this is not an installed box (no release folder): install with deploy/install.sh, or give --root"
        )
    if show:
        click.echo(describe(layout))
        return
    if bool(source) == rollback:
        fail("give a SOURCE to update to, or --rollback (not both)")
    env_file = ctx.find_root().obj.get("env_file")
    env_path = Path(env_file) if env_file and Path(env_file).is_file() else None
    updater = Updater(settings, env_path, layout, watch, python)
    try:
        message = updater.rollback() if rollback else updater.update(str(source))
    except (UpdateFailed, rel.ReleaseError, ControlError) as exc:
        event(log, "update_failed", level=40, problem=str(exc))
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(message)
