"""The recorder as a real process: synthetic camera, stop, restarts, crashes, Redis down, bad settings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from common import keys
from common.redisconn import text
from common.settings import Settings
from harness.media import make_logo
from harness.recorder_helpers import (
    FRAME,
    TEST_SOURCE,
    RecorderProc,
    alive,
    children_ffmpeg,
    ffmpeg_pid,
    health,
    index_of,
    max_gap,
    on_disk,
)
from harness.redis_server import RedisServer
from harness.repo import gn_env, gravanois_cmd
from tests.helpers import decode_errors, run_gravanois, wait_for


def cam_settings(make_settings: Callable[..., Settings], **kw: object) -> Settings:
    base: dict[str, object] = {
        "cameras": json.dumps({"cam1": TEST_SOURCE}),
        "pre_seconds": 2.0,
        "post_seconds": 1.0,
        "buffer_seconds": 60.0,
        "restart_backoff_max": 1.0,
    }
    base.update(kw)
    return make_settings(**base)


def test_synthetic_camera_tiles_decodes_and_stops_cleanly(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    settings = cam_settings(make_settings)
    buf = settings.camera_buffer_dir("cam1")
    buf.mkdir(parents=True)
    # What a crashed ffmpeg/recorder leaves: an unfinished part and a temp file.
    (buf / "part_999-1_000007.ts").write_bytes(b"\x47" * 1000)
    (buf / ".tmp-1-x").write_bytes(b"x")
    rec = RecorderProc(settings, "cam1", tmp_path / "logs")
    index = index_of(redis_conn, settings, "cam1")
    try:
        first = wait_for("the first segment", index.latest, timeout=30)
        t0 = time.time()
        time.sleep(8)
        stop_at = time.time()
        assert rec.terminate(10) == 0
    finally:
        rec.kill_quietly()
    segs = index.all()
    # Segments are seg_time (1 s) long, so N seconds give ≈ N segments.
    produced = [s for s in segs if s.start >= first.start]
    span = stop_at - first.start
    assert abs(len(produced) - span) <= 2, (len(produced), span)
    assert abs(max_gap(segs)) <= FRAME, max_gap(segs)
    assert all(0.5 <= s.duration <= 1.5 for s in segs[:-1]), [s.duration for s in segs]
    # The last segment was closed by the SIGINT to ffmpeg and indexed: it ends at the stop.
    assert abs(segs[-1].end - stop_at) < 1.5
    assert segs[0].start <= t0
    # The disk holds exactly the indexed segments, no leftovers, and every file decodes cleanly.
    assert on_disk(settings, "cam1") == sorted(s.name for s in segs)
    for seg in segs:
        assert decode_errors(buf / seg.name) == "", seg.name
    h = health(redis_conn, settings, "cam1")
    assert (
        h["state"] == "stopped"
        and h["mode"] == "encode"
        and float(h["keyframe_interval"]) == pytest.approx(1.0, abs=0.1)
    )
    assert "cam1" in {text(m) for m in redis_conn.smembers(keys.cameras(settings.device_id))}

    # A restart rebuilds the index from disk (even if Redis lost it) and appends after the last segment.
    redis_conn.delete(keys.segments(settings.device_id, "cam1"))
    rec2 = RecorderProc(settings, "cam1", tmp_path / "logs")
    try:
        wait_for("the index rebuilt from disk", lambda: len(index.all()) >= len(segs))
        wait_for(
            "a new segment", lambda: (latest := index.latest()) is not None and latest.start > segs[-1].end
        )
    finally:
        assert rec2.terminate(10) == 0
    again = index.all()
    assert again[: len(segs)] == segs
    new = again[len(segs)]
    assert new.start >= segs[-1].end  # an honest gap, never an overlap


def test_ffmpeg_killed_resumes_and_recorder_killed_leaves_no_ffmpeg(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    settings = cam_settings(make_settings)
    rec = RecorderProc(settings, "cam1", tmp_path / "logs")
    index = index_of(redis_conn, settings, "cam1")
    try:
        wait_for("recording", lambda: len(index.all()) >= 2)
        pid = wait_for("ffmpeg's pid", lambda: ffmpeg_pid(redis_conn, settings, "cam1"))
        os.kill(pid, signal.SIGKILL)
        killed = time.time()
        resumed = wait_for(
            "a segment from the new ffmpeg", lambda: [s for s in index.all() if s.start > killed], timeout=10
        )
        seen = time.time()
        assert seen - killed < 5.0, f"recording resumed only after {seen - killed:.1f} s"
        assert resumed[0].end - killed < 5.0
        restarts = redis_conn.hget(keys.counters(settings.device_id), "ffmpeg_restarts")
        assert restarts is not None and int(restarts) >= 1
        assert redis_conn.zcard(keys.camera_restarts(settings.device_id, "cam1")) >= 1
        assert '"event": "ffmpeg_restart"' in rec.log()

        new_pid = wait_for("the new ffmpeg", lambda: children_ffmpeg(rec.proc.pid))[0]
        rec.proc.kill()  # SIGKILL: no chance to clean up; the kernel's parent-death signal must do it
        rec.proc.wait()
        wait_for("ffmpeg to die with the recorder", lambda: not alive(new_pid), timeout=5)
    finally:
        rec.kill_quietly()


def test_disk_guard_drops_oldest_and_raises_alarm(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    # A floor no disk can meet: the guard keeps only the newest segment and the alarm stays up.
    settings = cam_settings(make_settings, buffer_min_free_mb=10**9)
    rec = RecorderProc(settings, "cam1", tmp_path / "logs")
    index = index_of(redis_conn, settings, "cam1")
    alarm = "buffer_disk_low_cam1"
    try:
        wait_for("the alarm", lambda: redis_conn.hget(keys.alarms(settings.device_id), alarm))
        wait_for(
            "a few segments closed", lambda: health(redis_conn, settings, "cam1").get("last_segment_end")
        )
        time.sleep(4)
        assert len(index.all()) <= 2
        assert len(on_disk(settings, "cam1")) <= 3  # plus the part ffmpeg is writing
        raised = redis_conn.hget(keys.alarms(settings.device_id), alarm)
        assert raised is not None
        message = json.loads(raised)["message"]
        assert "GN_BUFFER_MIN_FREE_MB" in message
    finally:
        assert rec.terminate() == 0
    # The guard deleted every second, and said so once (then at most every few minutes), not each time.
    lines = [json.loads(ln) for ln in rec.log().splitlines() if ln.startswith("{")]
    guard = [ln for ln in lines if ln.get("event") == "disk_guard"]
    assert len(guard) == 1 and guard[0]["level"] == "warning" and guard[0]["deleted"] >= 1, guard
    assert "pinned" in guard[0]["msg"]
    assert sum(1 for ln in lines if ln.get("event") == "disk_low") == 1
    # With a sane floor the next run clears the alarm left by the previous one.
    rec = RecorderProc(cam_settings(make_settings, buffer_min_free_mb=0), "cam1", tmp_path / "logs")
    try:
        wait_for(
            "the alarm cleared", lambda: redis_conn.hget(keys.alarms(settings.device_id), alarm) is None, 15
        )
    finally:
        assert rec.terminate() == 0


@pytest.mark.slow
def test_redis_outage_keeps_recording_and_resyncs(
    make_settings: Callable[..., Settings], private_redis: RedisServer, tmp_path: Path
) -> None:
    settings = cam_settings(
        make_settings, redis_url=private_redis.url, pre_seconds=1.0, post_seconds=1.0, buffer_seconds=12.0
    )
    conn = private_redis.client()
    rec = RecorderProc(settings, "cam1", tmp_path / "logs")
    index = index_of(conn, settings, "cam1")
    try:
        wait_for("retention at work", lambda: (segs := index.all()) and segs[0].start > time.time() - 15, 40)
        wait_for("a full buffer", lambda: index.all()[0].start < time.time() - 11, 20)
        private_redis.stop()
        down = time.time()
        time.sleep(9)
        # Still recording to disk; nothing deleted by age (pins are unknown while Redis is down).
        names = [n for n in on_disk(settings, "cam1") if n.startswith("seg_")]
        newest_end = int(names[-1].split("_")[2].split(".")[0]) / 1000
        oldest_end = int(names[0].split("_")[2].split(".")[0]) / 1000
        assert newest_end > down + 5
        assert oldest_end < time.time() - settings.buffer_seconds - 2
        private_redis.start()
        conn = private_redis.client()
        index = index_of(conn, settings, "cam1")
        # Back: the index is rebuilt from disk (the outage's segments included), then trimmed again.
        wait_for("the resync", lambda: any(s.start > down + 2 and s.end < down + 8 for s in index.all()), 10)
        wait_for(
            "age retention again",
            lambda: index.all()[0].end >= time.time() - settings.buffer_seconds - 2,
            10,
        )
        assert '"event": "redis_down"' in rec.log() and '"event": "redis_back"' in rec.log()
    finally:
        assert rec.terminate() == 0


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"GN_PRE_SECONDS": "-5"}, "GN_PRE_SECONDS"),
        ({"GN_SEG_TIME": "-1"}, "GN_SEG_TIME"),
        ({"GN_BUFFER_SECONDS": "20", "GN_PRE_SECONDS": "40", "GN_POST_SECONDS": "10"}, "GN_BUFFER_SECONDS"),
        ({"GN_CAMERAS": '{"cam1": "testsrc:huge"}'}, "testsrc"),
    ],
)
def test_bad_settings_exit_with_one_line(
    make_settings: Callable[..., Settings], env: dict[str, str], needle: str
) -> None:
    settings = make_settings()
    res = subprocess.run(
        gravanois_cmd("recorder", "--camera", "cam1"),
        env=gn_env(settings, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], res.stderr


def test_unknown_camera_and_unwritable_dir_exit_with_one_line(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    res = run_gravanois(make_settings(), "recorder", "--camera", "nope")
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "unknown camera 'nope'" in res.stderr
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    res = run_gravanois(make_settings(buffer_dir=blocker / "buffer"), "recorder", "--camera", "cam1")
    assert res.returncode == 2
    assert (
        res.stderr.strip().count("\n") == 0 and "GN_BUFFER_DIR" in res.stderr and "not writable" in res.stderr
    )


def mean_rgb(path: Path, crop: str) -> tuple[int, int, int]:
    """Average colour of a region of a video's first frame."""
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-frames:v", "1", "-vf", f"crop={crop},scale=1:1",
         "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout  # fmt: skip
    return out[0], out[1], out[2]


def test_watermark_burnt_in_while_recording(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    logo = make_logo(tmp_path / "logo.png", size="200x80", color="red")
    settings = cam_settings(make_settings, wm_at="record", wm_logo=logo, wm_opacity=1.0)
    rec = RecorderProc(settings, "cam1", tmp_path / "logs")
    index = index_of(redis_conn, settings, "cam1")
    try:
        wait_for("segments", lambda: len(index.all()) >= 3)
    finally:
        assert rec.terminate() == 0
    seg = settings.camera_buffer_dir("cam1") / index.all()[1].name
    assert decode_errors(seg) == ""
    # 320x240, logo 20 % wide (64x26) at the bottom-right with a 24 px margin: its middle is red.
    r, g, b = mean_rgb(seg, "20:10:254:198")
    assert r > 200 and g < 60 and b < 60, (r, g, b)
    # The top-left corner is the test pattern, not the logo.
    assert mean_rgb(seg, "20:10:30:30") != (r, g, b)
