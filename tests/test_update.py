"""`gravanois update` on an installed box (releases, `current`, boot.sh, supervised like systemd does):
a good release is switched to with every press kept; a broken one is refused or rolled back by itself;
`--rollback` and pruning; an updater killed at any step leaves a box that starts a complete release."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.update import release_of
from tests.helpers import wait_for
from tests.installed_box import InstalledBox, Releases

pytestmark = pytest.mark.slow

BOX = {
    "GN_CAMERAS": '{"cam1": "testsrc:320x240@15"}',
    "GN_PRE_SECONDS": "3",
    "GN_POST_SECONDS": "2",
    "GN_BUFFER_SECONDS": "40",
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
            found = re.search(r"highlight_cam1_\S+?(?=\.mp4|\s|$)", res.stdout + res.stderr)
            (self.accepted if res.returncode == 0 and found else self.refused).append(
                found[0] if found else (res.stdout + res.stderr).strip()[-300:]
            )
            self._stop.wait(self.every)

    def __enter__(self) -> Presser:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(120)


def all_finished(box: InstalledBox, stems: list[str], timeout: float = 240) -> None:
    """Every accepted press became a watermarked highlight."""
    wait_for(
        f"{len(stems)} highlights",
        lambda: all(box.finished(stem) for stem in stems),
        timeout=timeout,
        every=1,
    )


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
