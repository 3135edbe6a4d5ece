"""The pipeline's contract: its stages' table, states and retry policy, each defined here once.

A press becomes a highlight through three RQ jobs, one per stage:

    build  (press → raw clip + sidecar)  →  render (watermark, thumbnail)  →  upload (to the backend)

Every process that enqueues, runs, watches or repairs these jobs (trigger, worker, the operator
commands, the web app) reads the table below instead of spelling a queue, a function path, a job-id
rule, a timeout or a state name itself. Job functions are looked up only in this table: a worker runs
nothing else, whatever a job in Redis names. The names themselves (stages, queues, job ids) are made in
common.keys, with every other name the project gives Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import redis
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus

from common.keys import Counter, Stage, job_id, queue_name
from common.redisconn import SERIALIZER, connect

if TYPE_CHECKING:
    from common.settings import Settings


class HighlightState(StrEnum):
    """Where a highlight is, as `status`, the web app and `trigger press --wait` show it (Redis hash)."""

    SCHEDULED = "scheduled"  # pressed; the build waits for the post-roll
    BUILDING = "building"  # the build job is joining the window's segments
    BUILT = "built"  # the raw clip and its sidecar exist; the render is queued
    RETRYING = "retrying"  # an attempt failed; another one is due
    RENDERING = "rendering"  # watermark and thumbnail being made
    UPLOADING = "uploading"  # rendered; being delivered to the backend
    DONE = "done"  # finished (and delivered, when uploads are on)
    FAILED = "failed"  # failed for good; see `gravanois failed list`


class SidecarStatus(StrEnum):
    """The `status` field of a highlight's sidecar JSON (the seed's `queued` and `watermarked`, and on)."""

    QUEUED = "queued"  # the raw clip, waiting for its render
    WATERMARKED = "watermarked"  # rendered: watermarked clip and thumbnail in the output dir
    FAILED = "failed"  # the render failed for good (the raw clip is kept for a requeue)
    UPLOADED = "uploaded"  # the backend confirmed the upload
    UPLOAD_FAILED = "upload_failed"  # the upload failed for good after its retries
    UPLOAD_BLOCKED = "upload_blocked"  # the backend refused the credentials: fix them, then requeue


# Sidecar statuses of a highlight that is finished on the box and waits for nothing more from it.
DELIVERED = frozenset({SidecarStatus.UPLOADED})


@dataclass(frozen=True)
class StageSpec:
    """One stage: where its jobs go, what they run, how long they may take, how they are counted."""

    stage: Stage
    function: str  # the job function RQ imports (the only one a worker runs for this stage)
    timeout: int  # job timeout, seconds (an enqueuer may raise it, e.g. for a large upload)
    failed_counter: Counter  # incremented once when one of its jobs fails for good
    done_counter: Counter  # incremented once per highlight this stage finishes
    # The sidecar status the stage before hands over (what a requeue gives back), and the one this
    # stage's final failure leaves (build has no sidecar yet). The stage starts from either; any other
    # status (say `upload_blocked`) is left as it is.
    ready_status: SidecarStatus | None = None
    failed_status: SidecarStatus | None = None
    # Where in the sidecar the stage keeps its attempts and last error ("" = top level).
    sidecar_section: str = ""

    @property
    def starts_from(self) -> frozenset[SidecarStatus]:
        """The sidecar statuses this stage starts from."""
        return frozenset(s for s in (self.ready_status, self.failed_status) if s is not None)

    def section_of(self, data: dict[str, Any]) -> dict[str, Any]:
        """The part of a sidecar where this stage keeps its attempts and last error."""
        part = data.get(self.sidecar_section) if self.sidecar_section else data
        return dict(part) if isinstance(part, dict) else {}

    def section_changes(self, data: dict[str, Any], **fields: Any) -> dict[str, Any]:
        """The changes (for common.sidecar.update) that set `fields` in this stage's part of `data`."""
        return {self.sidecar_section: {**self.section_of(data), **fields}} if self.sidecar_section else fields

    def requeued_status(self, status: object) -> SidecarStatus | None:
        """The sidecar status a requeue of this stage's failed job gives back: its ready status when the
        stage's own failure left `status`; None (leave it) for any other."""
        return self.ready_status if self.failed_status is not None and status == self.failed_status else None


STAGES: dict[Stage, StageSpec] = {
    Stage.BUILD: StageSpec(
        Stage.BUILD, "worker.build.build_highlight", 900, Counter.BUILDS_FAILED, Counter.CLIPS_BUILT
    ),
    Stage.RENDER: StageSpec(
        Stage.RENDER,
        "worker.render.render_highlight",
        1800,
        Counter.RENDERS_FAILED,
        Counter.RENDERS_OK,
        ready_status=SidecarStatus.QUEUED,
        failed_status=SidecarStatus.FAILED,
    ),
    Stage.UPLOAD: StageSpec(
        Stage.UPLOAD,
        "worker.upload.upload_highlight",
        900,
        Counter.UPLOADS_FAILED,
        Counter.UPLOADS_OK,
        ready_status=SidecarStatus.WATERMARKED,
        failed_status=SidecarStatus.UPLOAD_FAILED,
        sidecar_section="remote",
    ),
}

# The job functions a worker may run: anything else in a queue is refused without being imported.
ALLOWED_FUNCTIONS = frozenset(spec.function for spec in STAGES.values())


class PermanentError(Exception):
    """A failure that retrying cannot fix (a bad argument, refused credentials, a missing input).

    The failure policy sends the job straight to the failed registry instead of spending its retries.
    """


def failure_of(job: Job) -> str:
    """Why a job failed, in one line: the failure policy's reason (worker.failures), else the last line
    of RQ's traceback; '' when neither was recorded."""
    if job.meta.get("error"):
        return str(job.meta["error"])
    result = job.latest_result()
    # The Result holds the traceback; older records keep it in the job hash (`exc_info`).
    text = (getattr(result, "exc_string", None) or job._exc_info or "").strip()
    return text.splitlines()[-1] if text else ""


def failure_ttl(settings: Settings) -> int:
    """Seconds a failed job stays in RQ's failed registry (GN_FAILURE_TTL_DAYS)."""
    return int(settings.failure_ttl_days * 86400)


def retry_intervals(attempts: int, intervals: tuple[float, ...] | list[float]) -> list[int]:
    """One wait per retry: the first retry waits the first interval, and so on; the last one repeats.

    RQ picks `intervals[len - retries_left]`, so the list must have exactly one entry per retry.
    """
    retries = max(0, attempts - 1)
    waits = [max(0, round(x)) for x in intervals] or [0]
    waits += [waits[-1]] * (retries - len(waits))
    return waits[:retries]


def retry_policy(settings: Settings) -> Retry | None:
    """RQ retries for every stage: GN_MAX_ATTEMPTS attempts in all, GN_RETRY_INTERVALS apart."""
    retries = settings.max_attempts - 1
    if retries <= 0:
        return None
    return Retry(max=retries, interval=retry_intervals(settings.max_attempts, settings.retry_intervals))


# A job id whose earlier job ended in one of these may be enqueued again (a deliberate retry);
# any other status means the job is already there, and enqueueing it again is a no-op.
RESTARTABLE = frozenset({JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED})


def earlier_job(
    conn: redis.Redis, jid: str, rerun: frozenset[JobStatus] = RESTARTABLE
) -> tuple[Job | None, bool]:
    """The job that holds the id `jid` (None: none), and whether it is already there: an enqueue of that
    id leaves it as it is (True), or there is none or it ended in a status of `rerun` (False: replaced)."""
    try:
        job = Job.fetch(jid, connection=conn, serializer=SERIALIZER)
    except NoSuchJobError:
        return None, False
    return job, job.get_status(refresh=False) not in rerun


def queue(settings: Settings, stage: Stage | str, conn: redis.Redis | None = None) -> Queue:
    """The RQ queue of one stage, JSON-serialized (never pickle)."""
    return Queue(
        queue_name(settings.device_id, stage),
        connection=conn or connect(settings),
        serializer=SERIALIZER,
        default_timeout=STAGES[Stage(stage)].timeout,
    )


def enqueue(
    settings: Settings,
    conn: redis.Redis,
    stage: Stage | str,
    arg: Any,
    *,
    press_id: str,
    at: float,
    when: float | None = None,
    timeout: int | None = None,
    suffix: str = "",
    rerun: frozenset[JobStatus] = RESTARTABLE,
) -> tuple[Job, bool]:
    """Put one highlight's stage job on its queue (at `when`, epoch s, if given); idempotent by job id.

    Returns (job, created): a job with the same id that is already there (`earlier_job`: queued,
    scheduled, running, finished, or ended in a status outside `rerun`) is returned as it is
    (created=False), like arq; one that ended in a status of `rerun` (by default failed or stopped) is
    replaced. The job carries its highlight in `meta` (stage, press_id, at), which the failure policy reads.
    """
    stage = Stage(stage)
    spec = STAGES[stage]
    q = queue(settings, stage, conn)
    jid = job_id(settings.device_id, press_id, stage, suffix)
    old, there = earlier_job(conn, jid, rerun)
    if old is not None:
        if there:
            return old, False
        old.delete()
    job = q.create_job(
        spec.function,
        args=(arg,),
        job_id=jid,
        timeout=timeout or spec.timeout,
        retry=retry_policy(settings),
        failure_ttl=failure_ttl(settings),
        description=f"{stage} {press_id}" + (f" ({suffix})" if suffix else ""),
        meta={"stage": stage.value, "press_id": press_id, "at": at},
        status=JobStatus.SCHEDULED if when is not None else JobStatus.QUEUED,
    )
    try:
        if when is not None:
            q.schedule_job(job, datetime.fromtimestamp(when, tz=UTC), unique=True)
        else:
            q.enqueue_job(job, unique=True)
    except DuplicateJobError:  # another process enqueued it in between
        return Job.fetch(jid, connection=conn, serializer=SERIALIZER), False
    return job, True
