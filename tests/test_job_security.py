"""A reachable Redis must not mean code execution or file deletion: hostile jobs put on the real queues."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from rq.job import Job

from common import sidecar
from common.journal import PressRecord
from common.pipeline import ALLOWED_FUNCTIONS, queue, queue_name
from common.redisconn import SERIALIZER
from common.settings import Settings
from tests.build_helpers import make_segments, run_build_worker
from tests.helpers import fetch, run_gravanois
from trigger import press as press_mod


def failure(job: Job) -> str:
    """Why the job failed, as the failure policy recorded it."""
    return str(job.meta.get("error") or "")


def test_only_the_pipeline_functions_are_allowed() -> None:
    assert {
        "worker.build.build_highlight",
        "worker.render.render_highlight",
        "worker.upload.upload_highlight",
    } == ALLOWED_FUNCTIONS


@pytest.mark.parametrize(
    ("function", "stage"),
    [("os.system", "build"), ("subprocess.call", "render"), ("shutil.rmtree", "upload")],
)
def test_a_job_naming_another_function_is_refused_and_nothing_runs(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path, function: str, stage: str
) -> None:
    s = make_settings(max_attempts=3)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    witness = tmp_path / "pwned"
    arg = {
        "os.system": f"touch {witness}",
        "subprocess.call": ["touch", str(witness)],
        "shutil.rmtree": str(victim),
    }[function]
    job = queue(s, stage, redis_conn).enqueue(function, arg, job_id=f"hostile-{stage}-{s.device_id}")
    done = run_build_worker(s, stage)
    assert done.returncode == 0, done.stderr[-2000:]
    job = fetch(redis_conn, job.id)
    assert job.get_status() == "failed" and job.retries_left in (0, None)
    assert "refused" in failure(job) and function in failure(job)
    assert not witness.exists() and (victim / "keep.txt").read_text() == "precious"


def test_a_job_naming_a_failure_callback_does_not_run_it(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    """RQ imports a job's callbacks by name too: a callback written into Redis is not imported."""
    s = make_settings(max_attempts=1)
    witness = tmp_path / "pwned"
    job = queue(s, "render", redis_conn).enqueue(
        "worker.render.render_highlight", "nonsense.json", job_id=f"cb-{s.device_id}"
    )
    redis_conn.hset(job.key, "failure_callback_name", "os.system")
    redis_conn.hset(job.key, "success_callback_name", "os.system")
    assert run_build_worker(s, "render").returncode == 0
    assert fetch(redis_conn, job.id).get_status() == "failed"
    assert not witness.exists()


@pytest.mark.parametrize("where", ["argument", "sidecar"])
def test_a_render_job_cannot_reach_files_outside_the_box(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path, where: str
) -> None:
    s = make_settings(max_attempts=1)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    target = outside / "highlight_cam1_20250101T000000000Z.mp4"
    target.write_bytes(b"someone else's file")
    (outside / "highlight_cam1_20250101T000000000Z.json").write_text("{}")
    if where == "argument":
        # The job names a sidecar path outside the clips and output dirs.
        arg = str(outside / "highlight_cam1_20250101T000000000Z.json")
    else:
        # A sidecar in the clips dir whose contents point outside the box.
        s.clips_dir.mkdir(parents=True)
        press = PressRecord("cam1", 1_735_689_600.0, 5, 2)
        name = sidecar.clip_name(press)
        data = sidecar.new(press, s.clips_dir / name, file_name=str(target), wm_path=str(target))
        sidecar.save(s.clips_dir / Path(name).with_suffix(".json").name, data)
        arg = Path(name).with_suffix(".json").name
    job = queue(s, "render", redis_conn).enqueue(
        "worker.render.render_highlight", arg, job_id=f"out-{s.device_id}"
    )
    assert run_build_worker(s, "render").returncode == 0
    job = fetch(redis_conn, job.id)
    assert job.get_status() == "failed"
    assert target.read_bytes() == b"someone else's file"  # neither rendered nor deleted
    assert sorted(os.listdir(outside)) == sorted([target.name, target.with_suffix(".json").name])
    if where == "argument":
        assert "outside this box" in failure(job) and job.retries_left in (0, None)
    else:
        assert "raw clip" in failure(job) and "missing" in failure(job)


def test_a_huge_job_argument_does_not_block_the_worker(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis
) -> None:
    """A 5 MB argument fails for good, quickly, and a real press queued behind it is built."""
    s = make_settings(pre_seconds=3, post_seconds=1, seg_time=1, buffer_seconds=60, cooldown_seconds=0)
    base = time.time() - 20
    make_segments(s, redis_conn, "cam1", base, 12)
    big = {"camera": "cam1", "at": base + 5, "pre": 3, "post": 1, "source": "x" * (5 * 1024 * 1024)}
    hostile = queue(s, "build", redis_conn).enqueue(
        "worker.build.build_highlight", big, job_id=f"big-{s.device_id}"
    )
    press = PressRecord("cam1", base + 8, 3, 1)
    assert press_mod.submit(s, redis_conn, press).state == press_mod.SCHEDULED
    done = run_build_worker(s, "build", timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert fetch(redis_conn, hostile.id).get_status() == "failed"
    assert "source" in failure(fetch(redis_conn, hostile.id))
    assert (s.clips_dir / sidecar.clip_name(press)).is_file()


def test_failed_commands_cope_with_malformed_jobs(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis
) -> None:
    """`failed list`, `requeue` and `purge` work with jobs whose data is not what the box writes."""
    s = make_settings()
    build_q = queue_name(s.device_id, "build")
    odd = {
        "at-not-a-number": [{"camera": "cam1", "at": "yesterday", "pre": 40, "post": 10}],
        "args-not-a-list": "just a string",
        "no-args": [],
    }
    ids = []
    for tag, args in odd.items():
        job = Job.create(
            "worker.build.build_highlight",
            args=args if isinstance(args, list) else [args],
            id=f"odd-{tag}-{s.device_id}",
            connection=redis_conn,
            serializer=SERIALIZER,
            origin=build_q,
        )
        job.save()
        with redis_conn.pipeline() as pipe:
            job._handle_failure("Traceback …\nBadPress: odd", pipe)
            pipe.execute()
        ids.append(job.id)
    # And one whose stored data is not even JSON.
    garbage = Job.create(
        "worker.build.build_highlight", args=[1], id=f"odd-garbage-{s.device_id}", connection=redis_conn,
        serializer=SERIALIZER, origin=build_q,
    )  # fmt: skip
    garbage.save()
    with redis_conn.pipeline() as pipe:
        garbage._handle_failure("Traceback …\nBadPress: odd", pipe)
        pipe.execute()
    redis_conn.hset(garbage.key, "data", b"\xff\x00 not json")
    ids.append(garbage.id)

    listing = run_gravanois(s, "failed", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    assert sorted(json.loads(line)["id"] for line in listing.stdout.splitlines()) == sorted(ids)
    requeued = run_gravanois(s, "failed", "requeue", ids[0])
    assert requeued.returncode == 0, requeued.stderr
    assert f"requeued {ids[0]}" in requeued.stdout
    purged = run_gravanois(s, "failed", "purge", "--all")
    assert purged.returncode == 0, purged.stderr
    assert run_gravanois(s, "failed", "list").stdout.strip() == "No failed jobs."
