"""`gravanois update` on an installed box (releases, `current`, boot.sh, supervised like systemd does):
a good release is switched to with every press kept; a broken one is refused or rolled back by itself;
`--rollback` and pruning; an updater killed at any step leaves a box that starts a complete release."""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.installed_box import InstalledBox, Releases
from ops.update import STEPS, release_of
from tests.helpers import wait_for

# Each test installs a release (a venv of the system's Python), the update installs another, then waits up to
# 180 s for the highlights: on a slow machine beside three other tests, the default 300 s covered all of it,
# so it cut the wait short before it could say which highlight was missing.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

BOX = {
    "GN_CAMERAS": '{"cam1": "testsrc:320x240@15"}',
    # A pre-roll longer than a failed trial's outage (restart + watch), as the default 40 s is.
    "GN_PRE_SECONDS": "20",
    "GN_POST_SECONDS": "2",
    "GN_BUFFER_SECONDS": "60",
    "GN_COOLDOWN_SECONDS": "0",
    "GN_WORKERS": "2",
    "GN_RETRY_INTERVALS": "1,1",
    # The button listener, on gpiozero's mock pins, also enqueues presses journalled while Redis was down.
    "GN_TRIGGER_INPUT": "gpio",
    "GPIOZERO_PIN_FACTORY": "mock",
    "GN_WM_AHEAD": "false",
}
WATCH = "12"


class Presser:
    """Presses the button (the one-shot CLI of whatever release `current` names) every `every` s."""

    def __init__(self, box: InstalledBox, every: float = 2.0) -> None:
        self.box, self.every = box, every
        self.accepted: list[str] = []
        self.refused: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            res = self.box.gravanois("trigger", "press", "--camera", "cam1", timeout=60)
            found = re.search(r"highlight_cam1_\S+?(?=\.mp4|\s|$)", res.stdout)
            if res.returncode == 0 and found:
                self.accepted.append(found[0])
            else:
                self.refused.append((res.stdout + res.stderr).strip()[-300:])
            self._stop.wait(self.every)

    def __enter__(self) -> Presser:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(120)


def all_finished(box: InstalledBox, stems: list[str], timeout: float = 180) -> None:
    """Every accepted press became a watermarked highlight (else: which did not, and what the box says)."""

    def unfinished() -> list[str]:
        return [stem for stem in stems if not box.finished(stem)]

    try:
        wait_for(f"{len(stems)} highlights", lambda: not unfinished(), timeout=timeout, every=1)
    except AssertionError as timed_out:
        missing = unfinished()
        status = box.gravanois("status", timeout=60)
        failed = box.gravanois("failed", "list", timeout=60)
        said = "\n".join(res.stdout + res.stderr for res in (status, failed))
        raise AssertionError(f"{timed_out}; not finished: {missing}\n{said}") from None


@pytest.fixture
def releases(tmp_path: Path) -> Releases:
    return Releases(tmp_path)


@pytest.fixture
def box(tmp_path: Path, releases: Releases) -> Iterator[InstalledBox]:
    with InstalledBox(tmp_path / "box", releases.wheel("0.1.0"), **BOX) as running:
        running.wait_recording(seconds=4, timeout=120)
        yield running


def test_update_to_a_good_release_switches_and_keeps_every_press(
    box: InstalledBox, releases: Releases
) -> None:
    old = box.current()
    new_wheel = releases.wheel("0.1.1")
    with Presser(box) as presser:
        time.sleep(3)
        update = box.start_update(str(new_wheel), "--watch", WATCH)
        out, err = update.communicate(timeout=600)
        time.sleep(3)
    assert update.returncode == 0, out + err
    new = box.current()
    assert new != old and new is not None and new.startswith("0.1.1-"), out
    assert re.search(rf"update to {re.escape(new)} done: .*one by one.*longest recording gap: cam1 ", out), (
        out
    )
    assert box.state()["phase"] == "committed" and box.layout.link("previous") == old
    # Every program now runs the new release (Redis, Debian's binary, is never restarted).
    programs = box.pids()
    assert {release_of(pid) for name, pid in programs.items() if name != "redis"} == {new}, programs
    version = box.gravanois("--version")
    assert f"release {new}" in version.stdout
    status = box.gravanois("status")
    assert f"release {new}" in status.stdout, status.stdout
    # Every press made before, during and after the update became a highlight.
    assert presser.refused == [] and len(presser.accepted) >= 8, presser.refused
    all_finished(box, presser.accepted)


def broken_import(src: Path) -> None:
    """A release whose code does not import (a module that does not exist)."""
    init = src / "worker" / "__init__.py"
    init.write_text(init.read_text() + "\nimport gravanois_module_that_does_not_exist  # noqa\n")


def mute_recorder(src: Path) -> None:
    """A release that starts but whose recorder never records (it waits forever before ffmpeg)."""
    cli = src / "recorder" / "cli.py"
    text = cli.read_text()
    marker = '    """Record one camera'
    assert marker in text
    cli.write_text(text.replace(marker, "    import time\n\n    time.sleep(10**6)\n" + marker, 1))


def one_line_error(err: str) -> str:
    """The updater's verdict: its last line, `error: …`."""
    return err.strip().splitlines()[-1]


def test_broken_releases_are_refused_or_rolled_back_by_themselves(
    box: InstalledBox, releases: Releases
) -> None:
    a = box.current()
    assert a is not None
    pids = box.pids()

    # A release that fails to import is refused before anything changes.
    refused = box.start_update(str(releases.wheel("0.1.1", broken_import)), "--watch", WATCH)
    out, err = refused.communicate(timeout=600)
    assert refused.returncode == 1, out + err
    line = one_line_error(err)
    assert re.fullmatch(
        r"error: update to 0\.1\.1-\w+ refused: its modules do not import: "
        rf".*gravanois_module_that_does_not_exist.*; still on {re.escape(a)}",
        line,
    ), line
    assert box.current() == a and box.pids() == pids and "phase" not in box.state()

    # A release whose camera never records is switched to, found unhealthy and rolled back by itself.
    # Presses made meanwhile are taken while the camera has recorded their window (each becomes a
    # highlight), refused at once when it has not: none is taken and then lost.
    with Presser(box) as presser:
        mute = box.start_update(str(releases.wheel("0.1.2", mute_recorder)), "--watch", WATCH)
        out, err = mute.communicate(timeout=600)
        time.sleep(3)
    assert mute.returncode == 1, out + err
    line = one_line_error(err)
    assert re.fullmatch(
        r"error: update to 0\.1\.2-\w+ failed \(camera cam1 (is not recording|has recorded nothing since its "
        rf"recorder restarted)\); rolled back to {re.escape(a)}, healthy",
        line,
    ), line
    assert box.current() == a and box.state()["phase"] == "rolled_back"
    assert {release_of(pid) for name, pid in box.wait_started().items() if name != "redis"} == {a}
    assert presser.accepted, presser.refused
    assert all("is not recording" in why for why in presser.refused), presser.refused
    all_finished(box, presser.accepted)


def test_rollback_by_hand_and_only_the_last_two_releases_kept(box: InstalledBox, releases: Releases) -> None:
    a = box.current()
    none = box.start_update("--rollback", "--watch", WATCH)
    _, err = none.communicate(timeout=120)
    assert none.returncode == 1 and one_line_error(err) == "error: there is no previous release to go back to"
    # A good one, then back by hand; a third one prunes the oldest (the last two are kept).
    good = box.start_update(str(releases.wheel("0.1.3")), "--watch", WATCH)
    out, err = good.communicate(timeout=600)
    assert good.returncode == 0, out + err
    b = box.current()
    back = box.start_update("--rollback", "--watch", WATCH)
    out, err = back.communicate(timeout=600)
    assert back.returncode == 0 and f"rollback to {a} done" in out, out + err
    assert box.current() == a and box.layout.link("previous") == b
    third = box.start_update(str(releases.wheel("0.1.4")), "--watch", WATCH)
    out, err = third.communicate(timeout=600)
    assert third.returncode == 0, out + err
    c = box.current()
    # supervisord itself still runs from the first release (programs were restarted one by one): kept.
    assert set(box.layout.installed()) == {a, c}, box.layout.installed()
    status = box.gravanois("update", "--status")
    assert f"current:  {c}" in status.stdout and f"previous: {a}" in status.stdout, status.stdout


def changed_supervisord_conf(src: Path) -> None:
    """A release whose supervisord.conf differs: supervisord itself must start again for it."""
    conf = src / "supervisord.conf"
    conf.write_text(conf.read_text() + "\n; this release's supervisord.conf differs from the last one's\n")


def test_a_release_that_needs_a_fresh_supervisord_restarts_it_and_keeps_every_press(
    box: InstalledBox, releases: Releases
) -> None:
    a = box.current()
    old_supervisord = box.supervisord_pid()
    with Presser(box) as presser:
        time.sleep(2)
        update = box.start_update(str(releases.wheel("0.1.1", changed_supervisord_conf)), "--watch", WATCH)
        out, err = update.communicate(timeout=600)
        time.sleep(3)
    assert update.returncode == 0, out + err
    new = box.current()
    assert new != a and "supervisord started anew" in out, out
    assert box.supervisord_pid() not in (None, old_supervisord)
    assert release_of(box.supervisord_pid() or 0) == new
    assert box.state()["phase"] == "committed"
    # Presses made while Redis restarted were journalled, then built.
    assert presser.refused == [] and presser.accepted, presser.refused
    all_finished(box, presser.accepted)


def kill_at(box: InstalledBox, wheel: Path, step: str) -> None:
    """Start an update and SIGKILL it at `step` (for install: half-way through filling the venv)."""
    if step == "install":
        present = {p.name for p in box.layout.releases.iterdir()}
        update = box.start_update(str(wheel), "--watch", WATCH)
        wait_for(
            "the new release's folder",
            lambda: [
                p for p in box.layout.releases.iterdir() if p.name not in present and (p / "bin").is_dir()
            ],
            timeout=300,
            every=0.1,
        )
    else:
        update = box.start_update(str(wheel), "--watch", WATCH, GN_UPDATE_PAUSE_AT=step)
        stderr = update.stderr
        assert stderr is not None
        wait_for(f"the updater at {step}", lambda: f"paused at {step}" in stderr.readline(), timeout=600)
    update.send_signal(signal.SIGKILL)
    update.wait()


def test_an_updater_killed_at_any_step_leaves_a_box_that_starts_a_complete_release(
    box: InstalledBox, releases: Releases
) -> None:
    a = box.current()
    wheel = releases.wheel("0.1.1")
    # "prune" comes after the commit: the only step after which the new release is the one to start.
    for step in STEPS:
        kill_at(box, wheel, step)
        box.kill_everything()  # and then a power cut
        box.start()
        box.wait_started()
        current = box.current()
        assert current is not None and box.layout.complete(current), step
        assert (current != a) == (step == "prune"), (step, current, box.state())
        assert box.state().get("phase") not in ("trial", "rolling_back"), (step, box.state())
        assert {release_of(pid) for name, pid in box.pids().items() if name != "redis"} == {current}, step
        assert box.gravanois("--version").returncode == 0, step
    # The box works: a press becomes a highlight; no unfinished release folder is left to be used.
    press = box.gravanois("trigger", "press", "--camera", "cam1", "--wait", timeout=180)
    assert press.returncode == 0, press.stdout + press.stderr
    assert all(box.layout.complete(r) for r in box.layout.installed())
