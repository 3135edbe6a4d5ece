"""`gravanois fleet` in a real browser (Debian's chromium, Playwright) on a real Mosquitto: every box's row,
its cameras, sorting by a column, and a box going offline shown live."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from harness.mosquitto import BACKEND_PASSWORD, BACKEND_USER, Mosquitto
from harness.redis_server import free_port
from harness.repo import gravanois_cmd
from ops.fleet.view import SHUTDOWN_GRACE
from tests.helpers import wait_for
from tests.test_web_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="chromium not installed")


def box_messages(
    device: str, online: bool, cameras: list[tuple[str, str]], failed: int
) -> dict[str, dict[str, Any]]:
    """The retained presence and state a box of the contract publishes."""
    common = {"device_id": device, "client_id": "c", "venue_id": "v", "agent_version": "0.1.0-test"}
    presence = {
        **common,
        "status": "online" if online else "offline",
        "timestamp": "2026-12-06T10:00:00.000Z",
    }
    state = {
        **common,
        "reported_at": "2026-12-06T10:00:00.000Z",
        "cameras": [{"id": c, "name": c, "camera_status": st, "segment_age_sec": 0.4} for c, st in cameras],
        "health": {
            "disks": {"output": {"free_bytes": 50, "total_bytes": 100, "low": False}},
            "failed_count": failed,
            "alarms": [],
        },
        "runtime": {"release": "0.1.0-test"},
    }
    return {"presence": presence, "state": state}


def publish(broker: Mosquitto, device: str, messages: dict[str, dict[str, Any]]) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{device}")
    client.username_pw_set(BACKEND_USER, BACKEND_PASSWORD)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    for topic, m in messages.items():
        client.publish(f"grn/devices/{device}/{topic}", json.dumps(m), qos=1, retain=True).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


@pytest.fixture
def view(tmp_path: Path) -> Iterator[tuple[Mosquitto, str, subprocess.Popen[bytes]]]:
    with Mosquitto(tmp_path / "mosquitto") as broker:
        port = free_port()
        url = f"mqtt://{BACKEND_USER}:{BACKEND_PASSWORD}@127.0.0.1:{broker.port}"
        with open(tmp_path / "view.log", "wb") as out:
            proc = subprocess.Popen(
                [*gravanois_cmd("fleet", "--broker", url, "--port", str(port))], stdout=out, stderr=out
            )
        try:
            yield broker, f"http://127.0.0.1:{port}/", proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.slow
def test_the_fleet_page_lists_every_box_sorts_and_follows_changes_live(
    view: tuple[Mosquitto, str, subprocess.Popen[bytes]],
) -> None:
    from playwright.sync_api import sync_playwright

    broker, url, proc = view
    publish(broker, "box-a", box_messages("box-a", True, [("cam1", "recording")], 0))
    publish(broker, "box-b", box_messages("box-b", True, [("cam1", "recording"), ("cam2", "stalled")], 3))
    publish(broker, "box-c", box_messages("box-c", False, [("cam1", "offline")], 0))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        wait_for("the page", lambda: _get(page, url), timeout=30)
        page.wait_for_function("document.querySelectorAll('#boxes tbody tr').length === 3", timeout=20_000)
        rows = lambda: page.eval_on_selector_all("#boxes tbody tr", "rs => rs.map(r => r.dataset.device)")  # noqa: E731
        assert rows() == ["box-a", "box-b", "box-c"]
        assert "stalled" in page.inner_text("tr[data-device=box-b] [data-camera=cam2]")
        assert page.inner_text("tr[data-device=box-c] td:nth-child(2)").startswith("offline")
        # Sorting: by failed highlights, most first (two clicks: ascending, then descending).
        page.click("th[data-key=failed] button")
        page.click("th[data-key=failed] button")
        assert rows()[0] == "box-b"
        # Live: box-a goes offline (its last will), the page says so without a reload.
        started = time.monotonic()
        publish(broker, "box-a", {"presence": box_messages("box-a", False, [], 0)["presence"]})
        status = "document.querySelector('tr[data-device=box-a] td:nth-child(2)').textContent"
        page.wait_for_function(f"{status}.startsWith('offline')", timeout=10_000)
        assert time.monotonic() - started < 10
        assert page.inner_text("#summary").startswith("3 boxes, 1 online, 2 offline")
        # Stopped with the page still open on its stream of changes, the view goes within its grace.
        started = time.monotonic()
        proc.terminate()
        # (uvicorn stops gracefully, then re-raises the signal it caught: the exit says SIGTERM.)
        assert proc.wait(SHUTDOWN_GRACE + 5) in (0, -signal.SIGTERM)
        print(f"the view stopped {time.monotonic() - started:.1f} s after SIGTERM with a page open")
        browser.close()


def _get(page: Any, url: str) -> bool:
    try:
        page.goto(url)
        return True
    except Exception:
        return False
