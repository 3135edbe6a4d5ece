"""common.pipeline's rules that several processes read: why a job failed, what a requeue restores, and
the one idempotent enqueue (real Redis, RQ's own in-process worker)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import redis
from rq import SimpleWorker
from rq.job import Job, JobStatus

from common import keys, sidecar
from common.journal import PressRecord
from common.pipeline import STAGES, SidecarStatus, Stage, earlier_job, enqueue, failure_of, queue
from common.redisconn import SERIALIZER
from common.segments import SegmentIndex
from common.settings import Settings
from ops import jobs, snapshot
from trigger import cli as trigger_cli
from trigger import press as press_mod
from worker.rqworker import PromptTeardown


class QuickSimpleWorker(PromptTeardown, SimpleWorker):
    """RQ's in-process worker (no failure policy of the box) with the box's prompt teardown."""


def test_one_failure_reason_for_failed_list_status_and_the_presser(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis
) -> None:
    s = make_settings()
    build = queue(s, Stage.BUILD, redis_conn)
    jid = keys.job_id(s.device_id, "cam1-20260101T000000000Z", Stage.BUILD)
    build.enqueue("json.loads", "not json", job_id=jid)
    QuickSimpleWorker([build], connection=redis_conn, serializer=SERIALIZER).work(burst=True)
    job = Job.fetch(jid, connection=redis_conn, serializer=SERIALIZER)
    # No failure policy ran: the last line of RQ's traceback.
    assert failure_of(job).startswith("json.decoder.JSONDecodeError: Expecting value")

    def shown() -> tuple[str, str, str]:
        fresh = Job.fetch(jid, connection=redis_conn, serializer=SERIALIZER)
        [row] = snapshot.snapshot(s, redis_conn)["failed_jobs"]
        return jobs.describe(Stage.BUILD, fresh, s).reason, row["error"], trigger_cli.job_reason(fresh)

    assert shown() == (failure_of(job), failure_of(job), "Expecting value: line 1 column 1 (char 0)")
    # The failure policy's one line wins over the traceback, in all three.
    job.meta["error"] = "camera cam1 recorded nothing since 2026-01-01T00:00:00.000Z"
    job.save_meta()
    assert shown() == (job.meta["error"],) * 3
    # Nothing recorded at all: each says so its own way.
    bare = Job.create("json.loads", args=["1"], connection=redis_conn, serializer=SERIALIZER)
    assert failure_of(bare) == ""
    assert jobs.describe(Stage.BUILD, bare, s).reason == "unknown (no error recorded)"
    assert trigger_cli.job_reason(bare) == f"job {bare.id} failed"


def test_a_requeue_restores_the_status_the_stage_table_names() -> None:
    render, upload = STAGES[Stage.RENDER], STAGES[Stage.UPLOAD]
    assert render.requeued_status(SidecarStatus.FAILED) == SidecarStatus.QUEUED
    assert upload.requeued_status(SidecarStatus.UPLOAD_FAILED) == SidecarStatus.WATERMARKED
    # Blocked credentials and a finished highlight stay as they are; build has no sidecar.
    assert upload.requeued_status(SidecarStatus.UPLOAD_BLOCKED) is None
    assert render.requeued_status(SidecarStatus.WATERMARKED) is None
    assert STAGES[Stage.BUILD].requeued_status(None) is None
    assert render.starts_from == {SidecarStatus.QUEUED, SidecarStatus.FAILED}
    assert upload.starts_from == {SidecarStatus.WATERMARKED, SidecarStatus.UPLOAD_FAILED}
    # The render starts from the status the build leaves in a new sidecar.
    press = PressRecord("cam1", 1_700_000_000.0, 5, 2)
    assert sidecar.new(press, Path(sidecar.clip_name(press)))["status"] == render.ready_status
    # A requeue's fresh count of attempts goes where the stage counts them.
    data = {"attempts": 3, "remote": {"attempts": 2, "clip_id": "c1"}}
    assert upload.section_changes(data, attempts=0) == {"remote": {"attempts": 0, "clip_id": "c1"}}
    assert render.section_changes(data, attempts=0) == {"attempts": 0}


def test_enqueue_is_idempotent_by_job_id(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis
) -> None:
    s = make_settings()
    press_id = "cam1-20260101T000000000Z"
    jid = keys.job_id(s.device_id, press_id, Stage.RENDER)
    assert earlier_job(redis_conn, jid) == (None, False)
    first, created = enqueue(s, redis_conn, Stage.RENDER, "a.json", press_id=press_id, at=1.0)
    again, created_again = enqueue(s, redis_conn, Stage.RENDER, "b.json", press_id=press_id, at=1.0)
    assert (created, created_again) == (True, False) and again.id == first.id == jid
    assert again.args == ["a.json"] and queue(s, Stage.RENDER, redis_conn).count == 1
    first.set_status(JobStatus.FAILED)
    # A failed job is already there for a caller that reruns nothing...
    kept, created = enqueue(
        s, redis_conn, Stage.RENDER, "c.json", press_id=press_id, at=1.0, rerun=frozenset()
    )
    assert not created and kept.args == ["a.json"]
    # ...and replaced by default (a deliberate retry).
    redone, created = enqueue(s, redis_conn, Stage.RENDER, "d.json", press_id=press_id, at=1.0)
    assert created and list(redone.args) == ["d.json"] and redone.get_status() == JobStatus.QUEUED


def test_a_press_whose_build_failed_is_a_duplicate_and_touches_nothing(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis
) -> None:
    s = make_settings(cooldown_seconds=0)
    press = PressRecord("cam1", time.time() - 30, 5, 2)
    assert press_mod.hand_over(s, redis_conn, press).state == press_mod.SCHEDULED
    job = Job.fetch(keys.job_id(s.device_id, press.press_id, Stage.BUILD), connection=redis_conn)
    job.set_status(JobStatus.FAILED)
    SegmentIndex(redis_conn, s.device_id, "cam1").unpin(press.press_id)  # as the failed build leaves it
    again = press_mod.hand_over(s, redis_conn, press)
    assert again.state == press_mod.DUPLICATE, again
    assert redis_conn.zcard(keys.pins(s.device_id, "cam1")) == 0  # no pin for a build that will not run
    assert redis_conn.hget(keys.counters(s.device_id), keys.Counter.PRESSES) == b"1"
    assert job.get_status(refresh=True) == JobStatus.FAILED
