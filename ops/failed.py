"""`gravanois failed`: the jobs that ran out of attempts (RQ's FailedJobRegistry of this device's queues).

`list` shows them, `requeue` retries them with a fresh attempt budget, `purge` removes them and their
files. Plain RQ works on the same data: `rq info` / `rq requeue --queue gn.<device>.<stage> --all`
(both with `-u $GN_REDIS_URL -S rq.serializers.JSONSerializer`), but `rq requeue` keeps the spent
attempt budget: a job requeued that way gets one attempt.

The operations are ops/jobs.py (the dashboard runs the same); this module is their command line: it
turns a `JobError` into an `error:` line and an exit code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict

import click
import redis

from common.cli import fail, settings_from
from common.redisconn import connect
from common.settings import Settings
from ops import jobs
from ops.jobs import JobError


@click.group()
def failed() -> None:
    """Jobs that failed after all their attempts: list, requeue, purge."""


@failed.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool) -> None:
    """Show failed jobs: clip, camera, press time, reason, when."""
    settings = settings_from(ctx, process="failed")
    rows = jobs.failed_jobs(settings, _conn(settings))
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
    done = 0
    for row in _chosen(settings, ids, all_):
        try:
            jobs.requeue(settings, row)
        except JobError as exc:
            fail(str(exc), 1)
        done += 1
        click.echo(f"requeued {row[1].id}")
    click.echo(f"{done} job(s) requeued.")


@failed.command()
@job_selection("Purge")
@click.pass_context
def purge(ctx: click.Context, ids: tuple[str, ...], all_: bool) -> None:
    """Remove failed jobs (by exact id, or --all) and their files (raw clip, sidecar, outputs)."""
    settings = settings_from(ctx, process="failed")
    chosen = _chosen(settings, ids, all_)
    purged = jobs.purge(settings, chosen)
    for _, job, _ in chosen:
        click.echo(f"purged {job.id}")
    click.echo(
        f"{len(chosen)} failed job(s) purged, {purged.files} file(s) removed; "
        f"retention removed {len(purged.by_retention)}."
    )


def _chosen(settings: Settings, ids: tuple[str, ...], all_: bool) -> list[jobs.Row]:
    """The failed jobs named on the command line; an `error:` line and exit code 2 when none fits."""
    try:
        return jobs.select(jobs.failed_jobs(settings, _conn(settings)), ids, all_)
    except JobError as exc:
        fail(str(exc))


def _conn(settings: Settings) -> redis.Redis:
    conn = connect(settings)
    try:
        conn.ping()
    except redis.RedisError:
        fail("Redis at GN_REDIS_URL is not answering: start redis-server or fix the URL", 1)
    return conn
