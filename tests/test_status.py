"""`gravanois status` / `gravanois metrics` against a real Redis, with real RQ jobs and registries."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from rq import SimpleWorker, Worker

from common import journal, keys
from common.alarms import raise_alarm
from common.highlights import note_highlight
from common.journal import PressRecord
from common.pipeline import enqueue, queue
from common.redisconn import SERIALIZER
from common.settings import Settings
from harness.media import make_logo, make_video
from harness.redis_server import RedisServer, free_port
from harness.repo import gn_env, gravanois_cmd
from tests.helpers import fetch, run_gravanois, start_gravanois, wait_for
from tests.render_helpers import stage_clip
from worker.rqworker import PromptTeardown

RQ_JSON = ("-S", "rq.serializers.JSONSerializer")
TWO_CAMS = '{"cam1": "testsrc", "cam2": "rtsp://user:pw@127.0.0.1:9/x"}'


class QuickSimpleWorker(PromptTeardown, SimpleWorker):
    """RQ's in-process worker with the box's prompt teardown (plain RQ may hang up to 60 s at exit)."""


class QuickWorker(PromptTeardown, Worker):
    """RQ's forking worker with the box's prompt teardown, for the `rq worker -w` command line."""


def report_health(conn: redis.Redis, settings: Settings, cam: str, state: str, seg_age: float) -> None:
    """Write a camera's health the way the recorder does (contract in BRIEF: health hash + cameras set)."""
    t = time.time()
    conn.sadd(keys.cameras(settings.device_id), cam)
    conn.hset(
        keys.camera_health(settings.device_id, cam),
        mapping={
            "state": state,
            "last_segment_end": t - seg_age,
            "buffered_seconds": 42.0,
            "keyframe_interval": 1.0,
            "pid": 12345,
            "source": "testsrc",
            "mode": "copy",
            "updated_at": t,
            "last_error": "",
        },
    )


@contextmanager
def running_scheduler(settings: Settings, conn: redis.Redis) -> Iterator[subprocess.Popen[bytes]]:
    """A real `gravanois scheduler` for the device, holding its lock, stopped at the end."""
    proc = start_gravanois(settings, "scheduler")
    try:
        wait_for("the scheduler's lock", lambda: conn.exists(keys.scheduler(settings.device_id)), 20)
        yield proc
    finally:
        proc.terminate()
        proc.wait(15)


def status_json(settings: Settings) -> tuple[int, dict]:
    res = run_gravanois(settings, "status", "--json")
    assert res.stdout, res.stderr
    return res.returncode, json.loads(res.stdout)


def test_status_reflects_stopped_camera_failed_job_and_full_queue(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis
) -> None:
    settings = make_settings(cameras=TWO_CAMS)
    report_health(redis_conn, settings, "cam1", "recording", seg_age=0.5)
    report_health(redis_conn, settings, "cam2", "stopped", seg_age=300)
    redis_conn.zadd(
        keys.camera_restarts(settings.device_id, "cam2"), {"a": time.time() - 60, "b": time.time() - 7200}
    )
    # A real failed job: a build job whose function raises, run by a real RQ worker.
    build = queue(settings, "build", redis_conn)
    build.enqueue("json.loads", "not json", job_id="gn-broken-build")
    QuickSimpleWorker([build], connection=redis_conn, serializer=SERIALIZER).work(burst=True)
    # A full queue: render jobs piling up with nobody serving them.
    render = queue(settings, "render", redis_conn)
    for i in range(25):
        render.enqueue("os.path.exists", f"/nowhere/{i}")
    redis_conn.hincrby(keys.counters(settings.device_id), "presses", 3)
    note_highlight(redis_conn, settings, "cam1-20260101T000000000Z", time.time() - 5, state="rendering")

    code, snap = status_json(settings)

    assert code == 1 and snap["ok"] is False
    cams = {c["id"]: c for c in snap["cameras"]}
    assert cams["cam1"]["recording"] is True and cams["cam1"]["buffered_seconds"] == 42.0
    assert cams["cam2"]["recording"] is False and cams["cam2"]["state"] == "stopped"
    assert cams["cam2"]["restarts_last_hour"] == 1
    assert snap["queues"]["build"]["failed"] == 1
    assert (
        snap["failed_jobs"][0]["id"] == "gn-broken-build"
        and "JSONDecodeError" in snap["failed_jobs"][0]["error"]
    )
    assert snap["queues"]["render"]["queued"] == 25 and snap["queues"]["render"]["workers"] == 0
    assert snap["queues"]["render"]["oldest_queued_age"] >= 0
    assert snap["counters"]["presses"] == 3 and set(snap["counters"]) == set(keys.COUNTERS)
    assert snap["highlights"][0]["state"] == "rendering"
    text = "\n".join(snap["attention"])
    assert "camera cam2 is not recording (stopped)" in text
    assert "cam1" not in text
    assert "failed build job" in text
    assert "25 render job(s) waiting and no worker" in text
    assert "pw@" not in json.dumps(snap)


def test_status_sees_a_dead_recorder_through_a_stale_hash(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis
) -> None:
    settings = make_settings()
    # The recorder was killed: its hash still says "recording" but no segment closed for a minute.
    report_health(redis_conn, settings, "cam1", "recording", seg_age=60)
    code, snap = status_json(settings)
    assert code == 1
    assert snap["cameras"][0]["recording"] is False
    assert any("cam1 is not recording (no new segment" in p for p in snap["attention"])


def test_status_exit_code_is_a_health_check(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis
) -> None:
    settings = make_settings()
    report_health(redis_conn, settings, "cam1", "recording", seg_age=0.2)
    with running_scheduler(settings, redis_conn):
        code, snap = status_json(settings)
        assert (code, snap["attention"]) == (0, [])
    raise_alarm(
        redis_conn, settings, keys.Alarm.UPLOAD_CREDENTIALS, "the backend refuses this device's secret"
    )
    code, snap = status_json(settings)
    assert code == 1 and snap["alarms"]["upload_credentials"]["message"].startswith("the backend refuses")
    assert snap["attention"][-1] == "alarm upload_credentials: the backend refuses this device's secret"
    # The text form for people says the same.
    res = run_gravanois(settings, "status")
    assert res.returncode == 1 and "NEEDS ATTENTION" in res.stdout and "upload_credentials" in res.stdout


def test_status_reports_low_disk(make_settings: Callable[..., Settings], redis_conn: redis.Redis) -> None:
    settings = make_settings(output_min_free_mb=10**9)
    report_health(redis_conn, settings, "cam1", "recording", seg_age=0.2)
    code, snap = status_json(settings)
    assert code == 1 and snap["disk"]["output"]["low"] is True and snap["disk"]["buffer"]["low"] is False
    assert any(p.startswith("output disk low") for p in snap["attention"])


def test_status_when_redis_is_down(
    make_settings: Callable[..., Settings], private_redis: RedisServer
) -> None:
    settings = make_settings(redis_url=private_redis.url)
    private_redis.stop()
    code, snap = status_json(settings)
    assert code == 1 and snap["redis"]["ok"] is False
    assert snap["attention"][0].startswith("Redis at redis://127.0.0.1:")
    assert snap["cameras"][0]["state"] == "unknown"


def test_metrics_in_prometheus_format(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis
) -> None:
    settings = make_settings()
    report_health(redis_conn, settings, "cam1", "recording", seg_age=0.2)
    redis_conn.hincrby(keys.counters(settings.device_id), "clips_built", 7)
    redis_conn.hincrby(keys.counters(settings.device_id), "bytes_uploaded", 1234)
    res = run_gravanois(settings, "metrics")
    assert res.returncode == 0, res.stderr
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(res.stdout)
        for s in fam.samples
    }
    dev = ("device", settings.device_id)
    assert samples[("gravanois_clips_built_total", (dev,))] == 7
    assert samples[("gravanois_bytes_uploaded_total", (dev,))] == 1234
    assert samples[("gravanois_presses_total", (dev,))] == 0
    assert samples[("gravanois_camera_recording", (("camera", "cam1"), dev))] == 1
    assert samples[("gravanois_redis_up", (dev,))] == 1
    assert samples[("gravanois_journal_pending", (dev,))] == 0
    assert samples[("gravanois_queue_jobs", (dev, ("stage", "build"), ("state", "failed")))] == 0


def test_metrics_http_endpoint_on_loopback(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    settings = make_settings()
    redis_conn.hincrby(keys.counters(settings.device_id), "presses", 2)
    port = free_port()
    proc = subprocess.Popen(
        gravanois_cmd("metrics", "--serve", str(port)),
        env=gn_env(settings),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        body = ""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                    body = resp.read().decode()
                break
            except OSError:
                time.sleep(0.1)
        assert f'gravanois_presses_total{{device="{settings.device_id}"}} 2.0' in body
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def job_with_progress(release_key: str) -> str:
    """An RQ job (run by a real worker below) that reports progress like the render job, then waits."""
    from rq import get_current_job

    job = get_current_job()
    assert job is not None
    job.meta["progress"] = 42
    job.save_meta()
    conn = job.connection
    deadline = time.monotonic() + 30
    while not conn.exists(release_key) and time.monotonic() < deadline:
        time.sleep(0.05)
    return "ok"


def test_status_shows_running_jobs_with_progress(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis
) -> None:
    settings = make_settings()
    report_health(redis_conn, settings, "cam1", "recording", seg_age=0.2)
    render = queue(settings, "render", redis_conn)
    release = f"{keys.ns(settings.device_id)}:test-release"
    render.enqueue("tests.test_status.job_with_progress", release, job_id="gn-render-progress")
    # RQ's own worker, as a process (the one the rq CLI runs), on this queue with the JSON serializer.
    worker = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "rq"),
            "worker",
            "--burst",
            "-w",
            "tests.test_status.QuickWorker",
            "-u",
            settings.redis_url,
            *RQ_JSON,
            render.name,
        ],
        env=gn_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        snap: dict = {}
        while time.monotonic() < deadline:
            _, snap = status_json(settings)
            if (
                snap["queues"]["render"]["running_jobs"]
                and snap["queues"]["render"]["running_jobs"][0]["progress"]
            ):
                break
            time.sleep(0.1)
        assert snap["queues"]["render"]["running"] == 1
        assert snap["queues"]["render"]["running_jobs"] == [{"id": "gn-render-progress", "progress": 42}]
        assert snap["queues"]["render"]["workers"] == 1
        text = run_gravanois(settings, "status").stdout
        assert "gn-render-progress 42%" in text
    finally:
        redis_conn.set(release, 1)
        assert worker.wait(30) == 0


def test_status_counts_presses_stuck_in_the_journal(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis
) -> None:
    settings = make_settings()
    report_health(redis_conn, settings, "cam1", "recording", seg_age=0.2)
    # What the trigger writes when Redis is down: a fresh press is fine, one left for minutes is not.
    journal.write(settings.journal_dir, PressRecord("cam1", time.time() - 1, 40, 10, "gpio"))
    with running_scheduler(settings, redis_conn):
        code, snap = status_json(settings)
    assert (code, snap["journal"]["pending"]) == (0, 1)
    journal.write(settings.journal_dir, PressRecord("cam1", time.time() - 300, 40, 10, "gpio"))
    code, snap = status_json(settings)
    assert code == 1 and snap["journal"]["pending"] == 2 and snap["journal"]["oldest_age"] >= 300
    assert any("2 press(es) waiting in" in p for p in snap["attention"])


def attention_of(settings: Settings) -> list[str]:
    attention: list[str] = status_json(settings)[1]["attention"]
    return attention


def test_status_sees_an_overdue_scheduled_job_until_a_scheduler_runs(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis
) -> None:
    settings = make_settings()
    report_health(redis_conn, settings, "cam1", "recording", seg_age=0.2)
    # A retry that was due 30 s ago: what a box whose scheduler died looks like.
    enqueue(
        settings, redis_conn, "upload", "highlight_cam1_20250101T000000000Z.json",
        press_id="cam1-20250101T000000000Z", at=time.time() - 60, when=time.time() - 30,
    )  # fmt: skip
    code, snap = status_json(settings)
    assert code == 1 and snap["queues"]["upload"]["overdue"] == 1
    assert any("1 scheduled upload job(s) overdue by" in p for p in snap["attention"]), snap["attention"]
    assert any(p.startswith("no scheduler is running") for p in snap["attention"])
    with running_scheduler(settings, redis_conn):
        wait_for("the due job moved", lambda: queue(settings, "upload", redis_conn).count == 1, 10)
        problems = attention_of(settings)
        assert not any("overdue" in p or "scheduler" in p for p in problems), problems
        # Now it waits on a queue nobody serves: still a problem, named as such.
        assert any("1 upload job(s) waiting and no worker serves" in p for p in problems), problems


@pytest.mark.slow
def test_status_names_a_job_on_a_dead_worker_and_stops_counting_the_worker(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    settings = make_settings(
        wm_logo=make_logo(tmp_path / "logo.png"), wm_preset="medium", max_attempts=3, retry_intervals=(0,)
    )
    report_health(redis_conn, settings, "cam1", "recording", seg_age=0.2)
    side = stage_clip(settings, seconds=2)
    data = json.loads(side.read_text())
    make_video(settings.clips_dir / data["file_name"], seconds=20, size="640x360", fps=30)
    job = enqueue(settings, redis_conn, "render", side.name, press_id=data["press_id"], at=time.time())[0]
    worker = start_gravanois(
        settings, "worker", "--queues", "render", "--no-scheduler", start_new_session=True
    )
    wait_for("render progress", lambda: (fetch(redis_conn, job.id).meta.get("progress") or 0) > 0, 60)
    assert status_json(settings)[1]["queues"]["render"]["workers"] == 1
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    orphan = f"render job {job.id} is running on a worker that is gone"
    wait_for("status naming the orphaned render", lambda: orphan in " ".join(attention_of(settings)), 30)
    code, snap = status_json(settings)
    assert code == 1 and snap["queues"]["render"]["orphaned"] == [job.id]
    wait_for(
        "the dead worker not counted",
        lambda: status_json(settings)[1]["queues"]["render"]["workers"] == 0,
        60,
    )
    # The scheduler takes the job back; it then waits for a worker, which status says.
    with running_scheduler(settings, redis_conn):
        wait_for("the job back on its queue", lambda: fetch(redis_conn, job.id).get_status() == "queued", 20)
        assert any("1 render job(s) waiting and no worker serves" in p for p in attention_of(settings))
        done = run_gravanois(
            settings, "worker", "--queues", "render", "--burst", "--no-scheduler", timeout=180
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert fetch(redis_conn, job.id).get_status() == "finished"
        report_health(redis_conn, settings, "cam1", "recording", seg_age=0.2)
        assert status_json(settings)[0] == 0, attention_of(settings)
