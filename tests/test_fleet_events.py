"""Every event of the fleet contract, caused for real and heard on a real Mosquitto, signed: presses taken
and refused by the trigger's code, highlights built, rendered, uploaded and failed by a real worker, a
camera lost and back under a real recorder, and the output disk low and then freed (a small tmpfs)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from common import ids, keys
from common.events import EventType
from common.journal import PressRecord
from common.pipeline import Stage, enqueue
from common.settings import Settings
from harness.backend_server import BackendServer
from harness.mosquitto import Mosquitto
from harness.recorder_helpers import RecorderProc
from harness.rtsp_server import RtspServer
from tests.build_helpers import make_segments, run_build_worker
from tests.fleet_helpers import Backend, signature_ok
from tests.helpers import fill, highlight_files, small_disk, wait_for
from tests.test_fleet import AgentProc, broker, fleet_settings  # noqa: F401 (the broker fixture)
from tests.upload_helpers import upload_overrides
from trigger import press as press_mod
from worker import retention

pytestmark = pytest.mark.slow


def heard(backend: Backend, timeout: float, *wanted: tuple[EventType, str]) -> dict[tuple[str, str], dict]:
    """Wait until the backend heard each (type, camera or trigger id) event; the first of each, by key."""

    def key(m: dict[str, Any]) -> tuple[str, str]:
        return m["type"], m.get("trigger_id") or m.get("camera_id") or ""

    want = {(t.value, who) for t, who in wanted}
    wait_for(
        f"the events {sorted(want)}",
        lambda: want <= {key(m) for m in backend.on("capture/events")},
        timeout=timeout,
    )
    first: dict[tuple[str, str], dict] = {}
    for m in backend.on("capture/events"):
        first.setdefault(key(m), m)
    return {k: first[k] for k in want}


def test_presses_highlights_and_storage_tell_the_fleet_signed(
    make_settings: Callable[..., Settings],
    broker: Mosquitto,  # noqa: F811
    settings: Settings,
    backend: BackendServer,
    recording: Callable[..., None],
    redis_conn: redis.Redis,
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path / "data", 40) as data:
        s = fleet_settings(
            make_settings,
            broker,
            data_dir=data,
            output_min_free_mb=12,
            cooldown_seconds=30,
            cameras=json.dumps({"cam1": "testsrc", "cam2": "testsrc"}),
            **upload_overrides(backend.base, max_attempts=1),
        )
        assert s.device_id == settings.device_id  # the backend's device
        fleet = Backend(broker, s.device_id, s.device_secret)
        recording(s, redis_conn, "cam1")  # cam2 has no recorder
        base = time.time() - 50
        make_segments(s, redis_conn, "cam1", base, 50)
        with AgentProc(s, tmp_path / "agent.log"):
            fleet.wait("presence", lambda m: m.get("status") == "online", timeout=30)
            taken = PressRecord("cam1", base + 44, 4, 2, source="gpio")
            cooled = PressRecord("cam1", base + 45, 4, 2, source="web")
            # A minute old: past any recorder's limit, so the reason is about its window whatever time
            # the agent took to come online (a press of a few seconds ago is judged by the recorder).
            refused = PressRecord("cam2", time.time() - 60, 4, 2, source="serial")
            assert press_mod.submit(s, redis_conn, taken).state == press_mod.SCHEDULED
            assert press_mod.submit(s, redis_conn, cooled).state == press_mod.COOLDOWN
            assert press_mod.submit(s, redis_conn, refused).state == press_mod.REFUSED
            # A render whose sidecar is gone fails for good (one attempt).
            gone = ids.press_id("cam1", base - 3600)
            enqueue(s, redis_conn, Stage.RENDER, f"{ids.highlight_stem('cam1', base - 3600)}.json",
                    press_id=gone, at=base - 3600)  # fmt: skip
            done = run_build_worker(s, "build", "render", "upload", timeout=240)
            assert done.returncode == 0, done.stderr[-3000:]
            # The output disk: an undelivered highlight kept below the free-space floor, then space back.
            highlight_files(s.output_dir, "waiting", "watermarked", 2, time.time() - 600)
            fill(data, leave_mb=8)
            retention.enforce(s, conn=redis_conn)
            low = heard(fleet, 60, (EventType.STORAGE_LOW, ""))
            (data / ".filler").unlink()
            retention.enforce(s, conn=redis_conn)
            got = heard(
                fleet,
                60,
                (EventType.TRIGGER_ACCEPTED, taken.press_id),
                (EventType.TRIGGER_REJECTED, cooled.press_id),
                (EventType.TRIGGER_REJECTED, refused.press_id),
                (EventType.HIGHLIGHT_DONE, taken.press_id),
                (EventType.HIGHLIGHT_UPLOADED, taken.press_id),
                (EventType.HIGHLIGHT_FAILED, gone),
                (EventType.STORAGE_OK, ""),
            )
            got.update(low)
    by_type = {t: m for (t, _), m in got.items()}
    # Every message is signed with the device's secret and names the device, its client and venue.
    for m in got.values():
        assert signature_ok(s.device_secret, "capture/events", m), m
        assert (m["device_id"], m["client_id"], m["venue_id"]) == (s.device_id, s.client_id, s.venue_id)
    # A consumer follows one press from accepted to uploaded by its id, and sees where it came from.
    for t in (EventType.TRIGGER_ACCEPTED, EventType.HIGHLIGHT_DONE, EventType.HIGHLIGHT_UPLOADED):
        m = got[(t.value, taken.press_id)]
        assert (m["camera_id"], m["trigger_source"]) == ("cam1", "gpio"), m
    cooldown = got[(EventType.TRIGGER_REJECTED.value, cooled.press_id)]
    assert cooldown["trigger_source"] == "web" and "cooldown" in cooldown["reason"]
    not_recording = got[(EventType.TRIGGER_REJECTED.value, refused.press_id)]
    assert not_recording["camera_id"] == "cam2" and "camera cam2 recorded nothing" in not_recording["reason"]
    assert not_recording["trigger_source"] == "serial"
    failed = got[(EventType.HIGHLIGHT_FAILED.value, gone)]
    assert failed["camera_id"] == "cam1" and failed["reason"]
    assert "wait for upload and are kept" in by_type[EventType.STORAGE_LOW.value]["reason"]
    # The events' order is the order they happened in.
    order = [m["event_id"] for m in fleet.on("capture/events")]
    accepted, uploaded = (got[(t.value, taken.press_id)]["event_id"] for t in
                          (EventType.TRIGGER_ACCEPTED, EventType.HIGHLIGHT_UPLOADED))  # fmt: skip
    assert order.index(accepted) < order.index(uploaded)
    fleet.close()


@pytest.mark.rtsp
@pytest.mark.skipif(not RtspServer.available(), reason="GStreamer RTSP server bindings not installed")
def test_a_camera_lost_and_back_tells_the_fleet_signed(
    make_settings: Callable[..., Settings],
    broker: Mosquitto,  # noqa: F811
    redis_conn: redis.Redis,
    tmp_path: Path,
) -> None:
    server = RtspServer(gop_seconds=1, credentials=("admin", "cam-pass-4242")).start()
    s = fleet_settings(
        make_settings, broker, cameras=json.dumps([{"id": "cam1", "source": server.url, "mode": "copy"}])
    )
    fleet = Backend(broker, s.device_id, s.device_secret)
    rec = RecorderProc(s, "cam1", tmp_path / "logs")
    try:
        with AgentProc(s, tmp_path / "agent.log"):
            wait_for(
                "recording",
                lambda: redis_conn.hget(keys.camera_health(s.device_id, "cam1"), "state") == b"recording",
                timeout=60,
            )
            # The camera hangs with its connection open: the watchdog stops ffmpeg (lost); the next ffmpeg
            # connects (the kernel still accepts) but gets nothing either (a restart that failed).
            server.freeze()
            got = heard(
                fleet, 90, (EventType.CAMERA_RECONNECTING, "cam1"), (EventType.CAMERA_RESTART_FAILED, "cam1")
            )
            server.thaw()
            got.update(heard(fleet, 90, (EventType.CAMERA_RECONNECTED, "cam1")))
    finally:
        code = rec.terminate()
        server.stop()
        fleet.close()
    assert code == 0
    for m in got.values():
        assert signature_ok(s.device_secret, "capture/events", m), m
        assert m["camera_id"] == "cam1" and m["device_id"] == s.device_id
    assert "stalled" in got[(EventType.CAMERA_RECONNECTING.value, "cam1")]["reason"]
    assert got[(EventType.CAMERA_RESTART_FAILED.value, "cam1")]["reason"]
    assert "cam-pass-4242" not in json.dumps(list(got.values()))  # the camera's password never leaves
