"""`gravanois failed`: the jobs that ran out of attempts (RQ's FailedJobRegistry of this device's queues).

`list` shows them, `requeue` retries them with a fresh attempt budget, `purge` removes them and their
files. Plain RQ works on the same data: `rq info` / `rq requeue --queue gn.<device>.<stage> --all`
(both with `-u $GN_REDIS_URL -S rq.serializers.JSONSerializer`), but `rq requeue` keeps the spent
attempt budget: a job requeued that way gets one attempt.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import redis
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry

from common import sidecar
from common.cli import fail, settings_from
from common.journal import Press
from common.keys import queue_name
from common.pipeline import STAGES, PermanentError, Stage, failure_of, retry_policy
from common.redisconn import SERIALIZER, connect
from common.settings import Settings
from common.timeutil import iso
from worker import files, retention


@dataclass
class FailedJob:
    """One row of `gravanois failed list`."""

    id: str
    stage: Stage
    clip: str
    camera: str
    press_at: str
    reason: str
    failed_at: str
    sidecar: str


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
            with_press = Press(**{k: arg[k] for k in ("camera", "at", "pre", "post") if k in arg})
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


def failed_jobs(settings: Settings, conn: redis.Redis) -> list[tuple[FailedJobRegistry, Job, FailedJob]]:
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


def select(rows: list[Any], ids: tuple[str, ...], all_: bool) -> list[Any]:
    """The rows whose job ids are exactly `ids`, or all of them with --all (never by a partial id)."""
    if all_:
        return rows
    if not ids:
        fail("name the failed job(s) to act on (ids from `gravanois failed list`) or pass --all")
    chosen = [r for r in rows if r[1].id in ids]
    missing = [i for i in ids if not any(i == r[1].id for r in rows)]
    if missing:
        fail(f"no failed job matches {', '.join(missing)}: see `gravanois failed list`")
    return chosen


@click.group()
def failed() -> None:
    """Jobs that failed after all their attempts: list, requeue, purge."""


@failed.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool) -> None:
    """Show failed jobs: clip, camera, press time, reason, when."""
    settings = settings_from(ctx, process="failed")
    rows = failed_jobs(settings, _conn(settings))
    if as_json:
        for _, _, row in rows:
            click.echo(json.dumps(asdict(row)))
        return
    if not rows:
        click.echo("No failed jobs.")
        return
    for _, _, r in rows:
        click.echo(f"{r.id}  [{r.stage}]  {r.clip}  camera={r.camera or '?'}  pressed={r.press_at or '?'}")
        click.echo(f"    failed {r.failed_at or '?'}: {r.reason}")
    click.echo(f"{len(rows)} failed job(s). Retry: gravanois failed requeue ID|--all")


def job_selection(verb: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The `IDS... | --all` arguments that `requeue` and `purge` share (ids match exactly)."""

    def decorate(fn: Callable[..., None]) -> Callable[..., None]:
        fn = click.option("--all", "all_", is_flag=True, help=f"{verb} every failed job of this device.")(fn)
        return click.argument("ids", nargs=-1)(fn)

    return decorate


@failed.command()
@job_selection("Requeue")
@click.pass_context
def requeue(ctx: click.Context, ids: tuple[str, ...], all_: bool) -> None:
    """Retry failed jobs now, each with a fresh attempt budget (GN_MAX_ATTEMPTS)."""
    settings = settings_from(ctx, process="failed")
    conn = _conn(settings)
    done = 0
    for reg, job, row in select(failed_jobs(settings, conn), ids, all_):
        requeue_job(settings, reg, job, row)
        done += 1
        click.echo(f"requeued {job.id}")
    click.echo(f"{done} job(s) requeued.")


def requeue_job(settings: Settings, reg: FailedJobRegistry, job: Job, row: FailedJob) -> None:
    """Give a failed job a fresh attempt budget and put it back on its queue."""
    policy = retry_policy(settings)
    job.retries_left = policy.max if policy else None
    job.retry_intervals = policy.intervals if policy else []
    for k in ("error", "failed_at", "progress"):
        job.meta.pop(k, None)
    job.save()
    spec = STAGES[row.stage]
    if row.sidecar and Path(row.sidecar).is_file():
        data = sidecar.load(Path(row.sidecar))
        restored = spec.requeued_status(data.get("status"))
        if restored is not None:
            # Back to the status the stage starts from, with a fresh count of the stage's attempts.
            sidecar.update(Path(row.sidecar), status=restored, **spec.section_changes(data, attempts=0))
    try:
        reg.requeue(job)
    except InvalidJobOperation:
        fail(f"{job.id} is no longer in the failed registry (requeued by someone else?)", 1)


@failed.command()
@job_selection("Purge")
@click.pass_context
def purge(ctx: click.Context, ids: tuple[str, ...], all_: bool) -> None:
    """Remove failed jobs (by exact id, or --all) and their files (raw clip, sidecar, outputs)."""
    settings = settings_from(ctx, process="failed")
    conn = _conn(settings)
    rows = failed_jobs(settings, conn)
    chosen = select(rows, ids, all_)
    files = 0
    for reg, job, row in chosen:
        if row.clip:
            files += retention.remove_highlight_files(settings, Path(row.clip).stem)
        reg.remove(job, delete_job=True)
        click.echo(f"purged {job.id}")
    removed = retention.enforce(settings)
    click.echo(
        f"{len(chosen)} failed job(s) purged, {files} file(s) removed; retention removed {len(removed)}."
    )


def _conn(settings: Settings) -> redis.Redis:
    conn = connect(settings)
    try:
        conn.ping()
    except redis.RedisError:
        fail("Redis at GN_REDIS_URL is not answering: start redis-server or fix the URL", 1)
    return conn
