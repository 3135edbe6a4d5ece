"""Render failures with real workers: retries with backoff, the failed registry, requeue, purge, SIGKILL."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis
from rq.registry import FailedJobRegistry, StartedJobRegistry

from common import keys, sidecar
from common.pipeline import enqueue, queue_name
from common.redisconn import SERIALIZER
from common.settings import Settings
from harness.media import corrupt, make_logo, make_video
from tests.helpers import fetch, run_gravanois, wait_for
from tests.render_helpers import ffmpeg_pids, stage_clip, start_worker


def _failed(settings: Settings, conn: redis.Redis) -> FailedJobRegistry:
    return FailedJobRegistry(queue_name(settings.device_id, "render"), connection=conn, serializer=SERIALIZER)


def _stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def test_corrupt_clip_fails_three_times_then_requeue_completes(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    settings = make_settings(wm_logo=make_logo(tmp_path / "logo.png"), max_attempts=3, retry_intervals=(2, 2))
    side = stage_clip(settings, seconds=2)
    data = sidecar.load(side)
    raw = settings.clips_dir / data["file_name"]
    good = tmp_path / "good.mp4"
    good.write_bytes(raw.read_bytes())
    corrupt(good, raw)
    job = enqueue(settings, redis_conn, "render", side.name, press_id=data["press_id"], at=time.time())[0]
    worker = start_worker(settings)
    try:
        wait_for(
            "the job in the failed registry",
            lambda: job.id in _failed(settings, redis_conn).get_job_ids(),
            40,
        )
    finally:
        _stop(worker)
    job = fetch(redis_conn, job.id)
    assert job.get_status() == "failed"
    times = job.meta["failures"]
    assert len(times) == 3
    # Backoff honoured. RQ schedules in whole epoch seconds, so a 2 s interval can start up to 1 s early.
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(times)), times
    assert "cannot be read" in job.meta["error"] and data["file_name"] in job.meta["error"]
    left = sidecar.load(side)  # the clip and its sidecar stay where they were
    assert raw.exists()
    assert left["status"] == "failed" and left["attempts"] == 3 and left["last_error"] == job.meta["error"]
    assert redis_conn.hget(keys.counters(settings.device_id), "renders_failed") == b"1"

    listing = run_gravanois(settings, "failed", "list")
    assert listing.returncode == 0, listing.stderr
    assert job.id in listing.stdout and data["file_name"] in listing.stdout
    assert "camera=cam1" in listing.stdout and data["press_at"] in listing.stdout
    assert "cannot be read" in listing.stdout
    # Plain RQ sees the same registry.
    rq = subprocess.run(
        [
            str(Path(sys.executable).parent / "rq"),
            "info",
            "-u",
            settings.redis_url,
            "-S",
            "rq.serializers.JSONSerializer",
            "-R",
            queue_name(settings.device_id, "render"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert rq.returncode == 0, rq.stderr
    assert queue_name(settings.device_id, "render") in rq.stdout

    good.replace(raw)  # the operator fixes the cause
    again = run_gravanois(settings, "failed", "requeue", "--all")
    assert again.returncode == 0 and "1 job(s) requeued" in again.stdout, again.stderr
    job = fetch(redis_conn, job.id)
    assert job.retries_left == 2  # a fresh budget
    done = run_gravanois(settings, "worker", "--burst", "--queues", "render", timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert fetch(redis_conn, job.id).get_status() == "finished"
    assert sidecar.load(settings.output_dir / side.name)["status"] == "watermarked"
    assert run_gravanois(settings, "failed", "list").stdout.strip() == "No failed jobs."


def test_failed_purge_removes_jobs_and_files(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    settings = make_settings(wm_logo=make_logo(tmp_path / "logo.png"), max_attempts=1)
    side = stage_clip(settings, seconds=2)
    data = sidecar.load(side)
    raw = settings.clips_dir / data["file_name"]
    raw.write_bytes(b"not a video at all")
    job = enqueue(settings, redis_conn, "render", side.name, press_id=data["press_id"], at=time.time())[0]
    done = run_gravanois(settings, "worker", "--burst", "--queues", "render", timeout=60)
    assert done.returncode == 0
    assert job.id in _failed(settings, redis_conn).get_job_ids()
    # Plain `rq requeue` (as docs/render.md shows it) puts it back on the queue, with no budget left.
    rq = [str(Path(sys.executable).parent / "rq"), "requeue", "-u", settings.redis_url]
    rq += [
        "-S",
        "rq.serializers.JSONSerializer",
        "--queue",
        queue_name(settings.device_id, "render"),
        "--all",
    ]
    assert subprocess.run(rq, capture_output=True, timeout=30).returncode == 0
    assert fetch(redis_conn, job.id).get_status() == "queued"
    assert run_gravanois(settings, "worker", "--burst", "--queues", "render", timeout=60).returncode == 0
    assert job.id in _failed(settings, redis_conn).get_job_ids()  # still broken: failed again
    bad = run_gravanois(settings, "failed", "requeue", "nope")
    assert bad.returncode == 2 and "no failed job matches nope" in bad.stderr
    unsure = run_gravanois(settings, "failed", "purge")  # no id: refuse rather than purge everything
    assert unsure.returncode == 2 and "--all" in unsure.stderr
    assert job.id in _failed(settings, redis_conn).get_job_ids() and raw.exists()
    partial = run_gravanois(settings, "failed", "purge", job.id[:-3])  # ids match exactly
    assert partial.returncode == 2 and "no failed job matches" in partial.stderr
    purged = run_gravanois(settings, "failed", "purge", job.id)
    assert purged.returncode == 0, purged.stderr
    assert f"purged {job.id}" in purged.stdout
    assert not raw.exists() and not side.exists()
    assert _failed(settings, redis_conn).get_job_ids() == []
    assert not redis_conn.exists(job.key)


def test_worker_sigkill_mid_render_leaves_nothing_and_the_retry_completes(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    settings = make_settings(
        wm_logo=make_logo(tmp_path / "logo.png"), wm_preset="medium", max_attempts=3, retry_intervals=(0,)
    )
    side = stage_clip(settings, seconds=2)
    data = sidecar.load(side)
    raw = settings.clips_dir / data["file_name"]
    make_video(raw, seconds=20, size="640x360", fps=30)  # long enough to be killed mid-render
    job = enqueue(settings, redis_conn, "render", side.name, press_id=data["press_id"], at=time.time())[0]
    worker = start_worker(settings)  # with its scheduler child, as a lone worker runs
    try:
        wait_for("render progress", lambda: (fetch(redis_conn, job.id).meta.get("progress") or 0) > 0, 60)
        assert ffmpeg_pids(raw.name), "no ffmpeg rendering?"
        os.kill(worker.pid, signal.SIGKILL)  # the worker only; its horse and ffmpeg must die with it
        killed = time.monotonic()
        worker.wait()
        wait_for("ffmpeg to die with the worker", lambda: not ffmpeg_pids(raw.name), 5)
    finally:
        _stop(worker)
    # No partial output visible: only (maybe) a temp file, never the final name.
    assert not (settings.output_dir / raw.name).exists()
    assert all(p.name.startswith(".tmp-") for p in settings.output_dir.iterdir())
    started = StartedJobRegistry(
        queue_name(settings.device_id, "render"), connection=redis_conn, serializer=SERIALIZER
    )
    assert job.id in started.get_job_ids()  # abandoned: RQ still believes it runs
    # supervisord starts the worker again; nobody runs a clean-up by hand: the box must take the
    # job back by itself (the dead scheduler's lock lapses, the job's heartbeat lapses).
    worker = start_worker(settings)
    try:
        wait_for("the abandoned render to finish", lambda: fetch(redis_conn, job.id).is_finished, 90)
        took = time.monotonic() - killed
    finally:
        _stop(worker)
    print(f"\nworker SIGKILL mid-render: render done {took:.1f} s after the kill")
    assert took <= 60, f"the render finished {took:.0f} s after the worker was killed"
    job = fetch(redis_conn, job.id)
    assert "worker died" in job.meta["error"] and len(job.meta["failures"]) == 1
    new = sidecar.load(settings.output_dir / side.name)
    assert new["status"] == "watermarked" and abs(new["meta_wm"]["duration_sec"] - 20) < 0.5
    assert new["attempts"] == 2  # the abandoned attempt was counted, then the one that finished
    assert not [p for p in settings.output_dir.iterdir() if p.name.startswith(".tmp-")]


def test_failed_list_shows_build_jobs_too(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis
) -> None:
    """A build job that ran out of attempts (RQ's registry API, no worker) is listed with its press."""
    from rq.job import Job

    from common.journal import PressRecord

    settings = make_settings()
    press = PressRecord(camera="cam2", at=1_700_000_000.25, pre=40, post=10)
    job = Job.create(
        "worker.build.build_highlight",
        args=[{"camera": "cam2", "at": press.at, "pre": 40, "post": 10, "source": "gpio"}],
        id=f"gn-{settings.device_id}-{press.press_id}",
        connection=redis_conn,
        serializer=SERIALIZER,
        origin=queue_name(settings.device_id, "build"),
    )
    job.save()
    reg = FailedJobRegistry(
        queue_name(settings.device_id, "build"), connection=redis_conn, serializer=SERIALIZER
    )
    with redis_conn.pipeline() as pipe:  # what RQ does when a job fails for good
        job._handle_failure(
            "Traceback …\nBuildError: no segment covers the window end (camera stalled)", pipe
        )
        pipe.execute()
    assert job.id in reg.get_job_ids()
    out = run_gravanois(settings, "failed", "list", "--json")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(rows) == 1
    row = rows[0]
    assert row["stage"] == "build" and row["camera"] == "cam2" and row["clip"] == sidecar.clip_name(press)
    assert row["press_at"].startswith("2023-11-14T22:13:20") and row["press_at"].endswith("Z")
    assert row["reason"] == "BuildError: no segment covers the window end (camera stalled)"
