"""The fleet's `update` command on an installed box (releases, `current`, boot.sh, supervised like systemd
does) with its agent on a real Mosquitto: a good release is reported done once the agent that the update
restarted comes back; a release whose camera never records is rolled back by itself and reported failed,
with the reason and the release the box is back on."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.installed_box import InstalledBox, Releases
from harness.mosquitto import Mosquitto
from tests.fleet_helpers import Backend, device_on
from tests.test_update import BOX, WATCH, mute_recorder

pytestmark = pytest.mark.slow

SECRET = "box-update-secret-0123456789abcdef"


@pytest.fixture
def fleet_box(tmp_path: Path) -> Iterator[tuple[InstalledBox, Backend, Releases]]:
    releases = Releases(tmp_path / "releases")
    with Mosquitto(tmp_path / "mosquitto") as broker:
        fleet = device_on(broker, "fu", SECRET, heartbeat=2.0)
        with InstalledBox(tmp_path / "box", releases.wheel("0.1.0"), **BOX, **fleet) as box:
            backend = Backend(broker, fleet["GN_DEVICE_ID"], SECRET)
            try:
                box.wait_recording(seconds=4, timeout=120)
                backend.wait("presence", lambda m: m.get("status") == "online", timeout=60)
                yield box, backend, releases
            finally:
                backend.close()


@pytest.mark.timeout(900)
def test_update_by_command_reports_done_and_a_rollback_reports_failed(
    fleet_box: tuple[InstalledBox, Backend, Releases],
) -> None:
    box, backend, releases = fleet_box
    first = box.current()
    good = backend.command("update", {"source": str(releases.wheel("0.1.1")), "watch": int(WATCH)})
    done = backend.result(good["command_id"], "done", timeout=600)
    new = box.current()
    assert new is not None and new.startswith("0.1.1-") and new != first
    assert re.match(rf"update to {re.escape(new)} done", done["result"]["outcome"]), done
    # The agent that answered runs the new release, and says so in its state.
    backend.wait("state", lambda m: m.get("agent_version", "").startswith("0.1.1"), timeout=60)

    mute = backend.command("update", {"source": str(releases.wheel("0.1.2", mute_recorder)), "watch": 12})
    failed = backend.result(mute["command_id"], "failed", timeout=600)
    assert box.current() == new and box.state()["phase"] == "rolled_back"
    assert "camera cam1" in failed["reason"] and failed["result"]["phase"] == "rolled_back", failed
