"""The failed jobs (RQ's FailedJobRegistry of this device's queues): list, requeue, purge.

The one place these operations live: `gravanois failed` (ops/failed.py) and the dashboard (ops/web/admin.py)
both call them. What cannot be done raises `JobError` with one sentence for the operator; the caller
turns it into its own answer (an `error:` line and an exit code, a page or a note), never this module.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry

from common import sidecar
from common.journal import PressRecord
from common.keys import queue_name
from common.pipeline import STAGES, PermanentError, Stage, failure_of, retry_policy
from common.redisconn import SERIALIZER
from common.settings import Settings
from common.timeutil import iso
from worker import files, retention


class JobError(Exception):
    """An operation on failed jobs that cannot be done; the message is one sentence for the operator."""


@dataclass
class FailedJob:
    """One failed job as the operator sees it (a row of `gravanois failed list`)."""

    id: str
    stage: Stage
    clip: str
    camera: str
    press_at: str
    reason: str
    failed_at: str
    sidecar: str


# A failed job: its registry, the RQ job, and what the operator is shown of it.
Row = tuple[FailedJobRegistry, Job, FailedJob]


@dataclass(frozen=True)
class Purged:
    """What a purge removed besides the jobs: the jobs' files, and the highlights retention removed."""

    files: int
    by_retention: list[str]


def registries(settings: Settings, conn: redis.Redis) -> dict[Stage, FailedJobRegistry]:
    """The failed registry of each stage's queue."""
    return {
        stage: FailedJobRegistry(
            queue_name(settings.device_id, stage), connection=conn, serializer=SERIALIZER
        )
        for stage in Stage
    }


def describe(stage: Stage, job: Job, settings: Settings) -> FailedJob:
    """What the operator needs to know about one failed job (whatever a hostile or corrupt job holds)."""
    clip = camera = press_at = side = ""
    try:
        arg: Any = job.args[0] if job.args else None
    except Exception:  # a job whose data cannot even be decoded is still listed, to be purged
        arg = None
    if isinstance(arg, dict):  # build: the press
        with contextlib.suppress(TypeError, ValueError, OverflowError, OSError):
            with_press = PressRecord(**{k: arg[k] for k in ("camera", "at", "pre", "post") if k in arg})
            camera = str(with_press.camera)
            clip, press_at = sidecar.clip_name(with_press), iso(float(with_press.at))
    elif isinstance(arg, str):  # render/upload: the sidecar's name
        with contextlib.suppress(PermanentError):
            highlight = files.from_job_arg(settings, arg)
            clip = highlight.raw.name
            path = highlight.current_sidecar()
            side = str(path or "")
            data: dict[str, Any] = {}
            with contextlib.suppress(OSError, ValueError):
                data = sidecar.load(path) if path is not None else {}
            camera, press_at = str(data.get("camera") or ""), str(data.get("press_at") or "")
    reason = failure_of(job) or "unknown (no error recorded)"
    return FailedJob(job.id, stage, clip, camera, press_at, reason, failed_at_of(job), side)


def failed_at_of(job: Job) -> str:
    """When it failed, ISO UTC."""
    if job.meta.get("failed_at"):
        return str(job.meta["failed_at"])
    return iso(job.ended_at.timestamp()) if job.ended_at else ""


def failed_jobs(settings: Settings, conn: redis.Redis) -> list[Row]:
    """Every failed job of this device, oldest first within each stage."""
    rows = []
    for stage, reg in registries(settings, conn).items():
        for job_id in reg.get_job_ids():
            try:
                job = Job.fetch(job_id, connection=conn, serializer=SERIALIZER)
            except NoSuchJobError:
                reg.remove(job_id)  # its hash expired: nothing left to show or retry
                continue
            except Exception:  # a corrupt job hash: list it by id, so it can still be purged
                job = Job(id=job_id, connection=conn, serializer=SERIALIZER)
            rows.append((reg, job, describe(stage, job, settings)))
    return rows


def select(rows: list[Row], ids: tuple[str, ...], all_: bool) -> list[Row]:
    """The rows whose job ids are exactly `ids`, or all of them with `all_` (never by a partial id)."""
    if all_:
        return rows
    if not ids:
        raise JobError("name the failed job(s) to act on (ids from `gravanois failed list`) or pass --all")
    chosen = [r for r in rows if r[1].id in ids]
    missing = [i for i in ids if not any(i == r[1].id for r in rows)]
    if missing:
        raise JobError(f"no failed job matches {', '.join(missing)}: see `gravanois failed list`")
    return chosen


def requeue(settings: Settings, row: Row) -> None:
    """Give a failed job a fresh attempt budget and put it back on its queue (its sidecar's status too)."""
    reg, job, failed = row
    policy = retry_policy(settings)
    job.retries_left = policy.max if policy else None
    job.retry_intervals = policy.intervals if policy else []
    for k in ("error", "failed_at", "progress"):
        job.meta.pop(k, None)
    job.save()
    spec = STAGES[failed.stage]
    if failed.sidecar and Path(failed.sidecar).is_file():
        data = sidecar.load(Path(failed.sidecar))
        restored = spec.requeued_status(data.get("status"))
        if restored is not None:
            # Back to the status the stage starts from, with a fresh count of the stage's attempts.
            sidecar.update(Path(failed.sidecar), status=restored, **spec.section_changes(data, attempts=0))
    try:
        reg.requeue(job)
    except InvalidJobOperation:
        raise JobError(f"{job.id} is no longer in the failed registry (requeued by someone else?)") from None


def purge(settings: Settings, rows: list[Row]) -> Purged:
    """Remove failed jobs and their files (raw clip, sidecar, outputs), then apply the output retention."""
    removed = 0
    for reg, job, failed in rows:
        if failed.clip:
            removed += retention.remove_highlight_files(settings, Path(failed.clip).stem)
        reg.remove(job, delete_job=True)
    return Purged(removed, retention.enforce(settings))
