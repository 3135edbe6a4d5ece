"""The fleet agent on a whole box (supervisord runs it beside the recorder, the workers and the trigger)
and a real Mosquitto: remote settings applied live and after a quiet restart with no press lost, the
state following a camera that stops and comes back, and the restart_camera command."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from common import sidecar
from harness.box import Box
from harness.mosquitto import Mosquitto
from tests.fleet_helpers import Backend, device_on
from tests.helpers import wait_for

pytestmark = pytest.mark.slow

SECRET = "box-fleet-secret-0123456789abcdef"
HEARTBEAT = 1.0


@pytest.fixture
def fleet_box(tmp_path: Path) -> Iterator[tuple[Box, Backend]]:
    with Mosquitto(tmp_path / "mosquitto") as broker:
        fleet = device_on(broker, "fb", SECRET, HEARTBEAT)
        with Box(
            tmp_path,
            **fleet,
            GN_CAMERAS='{"cam1": "testsrc:320x240@15"}',
            GN_PRE_SECONDS="3",
            GN_POST_SECONDS="2",
            GN_BUFFER_SECONDS="40",
            GN_COOLDOWN_SECONDS="0",
            GN_WORKERS="1",
            GN_WM_AHEAD="false",
            GN_TRIGGER_INPUT="gpio",
            GPIOZERO_PIN_FACTORY="mock",
        ) as box:
            backend = Backend(broker, fleet["GN_DEVICE_ID"], SECRET)
            try:
                box.wait_recording(seconds=4, timeout=120)
                backend.wait("presence", lambda m: m.get("status") == "online", timeout=60)
                yield box, backend
            finally:
                backend.close()


def press(box: Box) -> tuple[str, str]:
    """`gravanois trigger press`: its first word (scheduled, ignored …) and the highlight's stem."""
    res = box.gravanois("trigger", "press", "--camera", "cam1", timeout=60)
    stem = re.search(r"highlight_cam1_\S+?(?=\.mp4|\s|$)", res.stdout)
    return res.stdout.split(" ", 1)[0], stem[0] if stem else ""


def reported(backend: Backend, version: int, status: str, timeout: float = 120) -> dict:
    return backend.wait(
        "config/reported", lambda m: m.get("config_version") == version and m.get("status") == status, timeout
    )


def test_remote_settings_live_and_after_a_quiet_restart_lose_no_press(fleet_box: tuple[Box, Backend]) -> None:
    box, backend = fleet_box
    # Live: a cooldown set from the fleet holds for the very next press, no restart.
    backend.desired(1, {"GN_COOLDOWN_SECONDS": 600})
    reported(backend, 1, "applied", timeout=30)
    first, stem = press(box)
    again, _ = press(box)
    assert (first, again) == ("scheduled", "cooldown"), (first, again)
    taken = [stem]
    # A pre-roll set from the fleet needs the programs restarted: pending until a quiet moment, then
    # applied; presses meanwhile (cooldown 0 again, live; one every few seconds, as players press) all
    # become highlights.
    backend.desired(2, {"GN_COOLDOWN_SECONDS": 0, "GN_PRE_SECONDS": 5})
    pending = reported(backend, 2, "pending_restart", timeout=30)
    assert pending["pending"] == ["GN_PRE_SECONDS"]
    deadline = time.monotonic() + 120
    while backend.on("config/reported")[-1].get("status") != "applied" and time.monotonic() < deadline:
        word, stem = press(box)
        assert word == "scheduled", word
        taken.append(stem)
        time.sleep(4.0)
    reported(backend, 2, "applied", timeout=5)
    box.wait_recording(seconds=6, timeout=60)
    word, stem = press(box)
    taken.append(stem)
    wait_for(f"{len(taken)} highlights", lambda: all(box.finished(s) for s in taken), timeout=240, every=1)
    last = sidecar.load(box.output_dir / f"{stem}.json")
    assert last["pre_seconds"] == 5  # the programs run the new pre-roll
    # It survives a reboot: the remote settings file beats .env and the environment.
    _, snap = box.status()
    assert snap["counters"]["presses"] >= len(taken)


def camera_status(backend: Backend) -> str:
    states = backend.on("state")
    return states[-1]["cameras"][0]["camera_status"] if states else ""


def test_state_follows_a_camera_stopping_and_coming_back(fleet_box: tuple[Box, Backend]) -> None:
    box, backend = fleet_box
    wait_for("a state saying recording", lambda: camera_status(backend) == "recording", timeout=30)
    for action, recording in (("stop", False), ("start", True)):
        assert box.ctl(action, "recorder-cam1").returncode == 0
        # When `status` (the box's own verdict) changed, the state follows within one heartbeat.
        flipped = wait_for(
            "the box's own verdict", partial(_status_says, box, recording), timeout=90, every=0.2
        )
        wait_for(f"the state after {action}", partial(_state_says, backend, recording), timeout=30, every=0.1)
        assert time.monotonic() - flipped <= HEARTBEAT + 2.0


def _state_says(backend: Backend, recording: bool) -> bool:
    return (camera_status(backend) == "recording") is recording


def _status_says(box: Box, recording: bool) -> float:
    """When `gravanois status` says the camera is (not) recording: now, else 0."""
    _, snap = box.status()
    return time.monotonic() if snap["cameras"][0]["recording"] is recording else 0.0


def test_restart_camera_command(fleet_box: tuple[Box, Backend]) -> None:
    box, backend = fleet_box
    before = box.pids()["recorder-cam1"]
    command = backend.command("restart_camera", {"camera": "cam1"})
    done = backend.result(command["command_id"], "done", timeout=90)
    assert done["result"] == {"program": "recorder-cam1"}
    assert box.pids()["recorder-cam1"] != before
    box.wait_recording(seconds=1, timeout=60)
    logs = backend.command("logs_tail", {"program": "recorder-cam1", "lines": 20})
    lines = backend.result(logs["command_id"], "done")["result"]["lines"]
    assert any(json.loads(line).get("event") == "ffmpeg_started" for line in lines if line.startswith("{"))
