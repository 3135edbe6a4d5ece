"""Press to clip end to end: a real recorder (synthetic camera or RTSP on loopback), real Redis, a real
`gravanois worker` and `gravanois trigger press`/`listen` processes."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from common import journal, sidecar
from common.ffmpeg import probe
from common.fsutil import sha256_file
from common.journal import PressRecord
from common.pipeline import job_id
from common.proc import stop
from common.segments import SegmentIndex
from common.settings import Settings
from common.timeutil import parse_iso
from harness.recorder_helpers import TEST_SOURCE, RecorderProc
from harness.repo import REPO, gn_env, gravanois_cmd
from harness.rtsp_server import RtspServer
from tests.helpers import decode_errors, fetch, run_gravanois, wait_for
from tests.test_build import SIDECAR_FIELDS

PRE, POST = 5.0, 2.0


def e2e_settings(make_settings: Callable[..., Settings], source: str = TEST_SOURCE, **kw: object) -> Settings:
    base: dict[str, object] = {
        "cameras": json.dumps([{"id": "cam1", "source": source, "mode": "copy"}]),
        "pre_seconds": PRE,
        "post_seconds": POST,
        "seg_time": 1,
        "buffer_seconds": 40,
        "cooldown_seconds": 0,
        "max_attempts": 1,
        "restart_backoff_max": 1.0,
    }
    base.update(kw)
    return make_settings(**base)


@contextmanager
def pipeline(s: Settings, tmp: Path, worker: bool = True) -> Iterator[RecorderProc]:
    """A recorder on cam1 and a build worker (with the scheduler), stopped at the end."""
    rec = RecorderProc(s, "cam1", tmp / "logs")
    procs: list[subprocess.Popen[bytes]] = []
    if worker:
        procs.append(start_worker(s, tmp))
    try:
        yield rec
    finally:
        for p in procs:
            stop(p, grace=15, first=signal.SIGTERM)
        rec.terminate(10)


def start_worker(s: Settings, tmp: Path) -> subprocess.Popen[bytes]:
    log = open(tmp / f"worker-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        gravanois_cmd("worker", "--queues", "build"), env=gn_env(s), cwd=REPO, stdout=log, stderr=log
    )


def wait_preroll(conn: redis.Redis, s: Settings, seconds: float, timeout: float = 60) -> None:
    index = SegmentIndex(conn, s.device_id, "cam1")

    def enough() -> bool:
        segs = index.all()
        return bool(segs) and segs[-1].end - segs[0].start >= seconds

    wait_for(f"{seconds} s recorded", enough, timeout)


def press(s: Settings) -> PressRecord:
    done = run_gravanois(s, "trigger", "press", "--camera", "cam1")
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.split("job=")[1].split()[0]
    conn = redis.Redis.from_url(s.redis_url)
    return PressRecord(**fetch(conn, job_id).args[0])


def built(conn: redis.Redis, s: Settings, p: PressRecord, timeout: float = 60) -> dict:
    """Wait for the press's build job; its sidecar."""
    build_id = job_id(s.device_id, p.press_id, "build")

    def finished() -> bool:
        job = fetch(conn, build_id)
        status = job.get_status(refresh=True)
        result = job.latest_result() if status == "failed" else None
        assert status != "failed", result.exc_string if result is not None else "no result"
        return status == "finished"

    wait_for(f"build job {build_id}", finished, timeout)
    data: dict = json.loads(sidecar.path_for(s.clips_dir / sidecar.clip_name(p)).read_text())
    return data


def check_clip(s: Settings, p: PressRecord, data: dict, max_segment: float) -> None:
    """Window bracketed by the real segment times, duration = pre+post within one segment, clean decode."""
    clip = s.clips_dir / sidecar.clip_name(p)
    assert set(data) >= SIDECAR_FIELDS, SIDECAR_FIELDS - set(data)
    assert data["sha256"] == sha256_file(clip) and data["gaps"] == []
    assert abs(parse_iso(data["press_at"]) - p.at) < 0.002
    a, b = p.window
    first, last = parse_iso(data["first_segment"]["start"]), parse_iso(data["last_segment"]["end"])
    assert first <= a + 0.002 and last >= b - 0.002, (first - a, last - b)
    assert first > a - max_segment and last < b + max_segment
    duration = probe(clip).duration_sec
    assert PRE + POST - 0.1 <= duration <= PRE + POST + 2 * max_segment, duration
    # The clip ends at the window's end (a copy can stop on any frame), not at the last segment's end.
    end = parse_iso(data["actual_window"]["end"])
    assert abs(end - min(last, b)) < 0.002
    assert abs(duration - (end - first)) <= 0.35, (duration, end - first)
    assert decode_errors(clip) == ""


def test_synthetic_camera_press_to_clip(make_settings, redis_conn: redis.Redis, tmp_path: Path):
    s = e2e_settings(make_settings)
    with pipeline(s, tmp_path):
        wait_preroll(redis_conn, s, PRE + 1)
        p = press(s)
        data = built(redis_conn, s, p)
    check_clip(s, p, data, max_segment=1.5)
    assert data["meta"]["width"] == 320 and data["meta"]["codec"] == "h264"


@pytest.mark.skipif(not RtspServer.available(), reason="GStreamer RTSP server bindings not installed")
@pytest.mark.parametrize("gop", [1, 3])
def test_rtsp_copy_mode_press_to_clip(make_settings, redis_conn: redis.Redis, tmp_path: Path, gop: int):
    server = RtspServer(gop_seconds=gop).start()
    try:
        s = e2e_settings(make_settings, source=server.url)
        with pipeline(s, tmp_path):
            wait_preroll(redis_conn, s, PRE + 2 * gop, timeout=60)
            p = press(s)
            data = built(redis_conn, s, p)
    finally:
        server.stop()
    # with a 3 s GOP a copy-mode segment is 3 s long: the clip is longer but still covers the window,
    # and the sidecar tells the real one
    check_clip(s, p, data, max_segment=gop + 0.5)
    segs = [parse_iso(data["first_segment"]["end"]) - parse_iso(data["first_segment"]["start"])]
    assert abs(segs[0] - gop) < 0.5, segs


def test_two_presses_two_seconds_apart_cooldown(make_settings, redis_conn: redis.Redis, tmp_path: Path):
    s = e2e_settings(make_settings)
    with pipeline(s, tmp_path):
        wait_preroll(redis_conn, s, PRE + 1)
        p1 = press(s)
        time.sleep(2)
        p2 = press(s)
        # the same camera with a 30 s cooldown: the second press is ignored
        cool = e2e_settings(make_settings, cooldown_seconds=30)
        time.sleep(1)
        p3 = press(cool)
        time.sleep(2)
        ignored = run_gravanois(cool, "trigger", "press", "--camera", "cam1")
        assert ignored.returncode == 0 and "cooldown" in ignored.stdout
        d1, d2, d3 = (built(redis_conn, s, p) for p in (p1, p2, p3))
    for p, d in ((p1, d1), (p2, d2), (p3, d3)):
        check_clip(s, p, d, max_segment=1.5)
    # Two presses close together (the second within the first's pre-roll, however long the press command
    # took to start on a busy machine): overlapping clips, the second one starting inside the first one.
    assert 1.5 < p2.at - p1.at < PRE
    assert parse_iso(d2["first_segment"]["start"]) < parse_iso(d1["last_segment"]["end"])
    clips = sorted(x.name for x in s.clips_dir.glob("*.mp4"))
    assert clips == sorted(sidecar.clip_name(p) for p in (p1, p2, p3))


@pytest.mark.slow
def test_press_while_redis_is_down_gives_clip_with_original_time(
    make_settings, private_redis, tmp_path: Path
) -> None:
    s = e2e_settings(make_settings, redis_url=private_redis.url)
    conn = private_redis.client()
    listener_log = open(tmp_path / "listener.log", "wb")  # noqa: SIM115
    listener = subprocess.Popen(
        gravanois_cmd("trigger", "listen", "--input", "enter"),
        env=gn_env(s),
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=listener_log,
        stderr=listener_log,
    )
    worker = None
    try:
        with pipeline(s, tmp_path, worker=False):
            wait_preroll(conn, s, PRE + 1)
            private_redis.stop()
            before = time.time()
            done = run_gravanois(s, "trigger", "press", "--camera", "cam1", timeout=30)
            assert done.returncode == 0 and "journalled" in done.stdout, done.stderr
            [p] = journal.pending(s.journal_dir)
            assert before <= p.at <= time.time()
            time.sleep(20)
            private_redis.start()
            worker = start_worker(s, tmp_path)
            wait_for("the listener to replay the press", lambda: not journal.pending(s.journal_dir), 20)
            data = built(conn, s, p, timeout=90)
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(15)
        listener.send_signal(signal.SIGTERM)
        listener.wait(15)
    assert abs(parse_iso(data["press_at"]) - p.at) < 0.002
    check_clip(s, p, data, max_segment=1.5)
