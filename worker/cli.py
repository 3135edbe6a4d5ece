"""`gravanois worker`: RQ's worker on this device's queues, JSON-serialized, scheduler on."""

from __future__ import annotations

import importlib

import click

from common import keys
from common.cli import fail, settings_from
from common.log import event, get_logger
from common.redisconn import SERIALIZER, connect, queue, wait_for_redis
from common.settings import Settings
from worker.rqworker import BoxWorker

log = get_logger(__name__)

# Seconds between the worker's clean-ups of jobs abandoned by dead workers (RQ's default: 600).
MAINTENANCE_SECONDS = 60


@click.command()
@click.option(
    "--queues",
    "stages",
    default="build,render,upload",
    show_default=True,
    help="Stages to serve, in priority order (build first, so a render never delays a build).",
)
@click.option("--burst", is_flag=True, help="Stop when the queues are empty (tests, one-off runs).")
@click.option(
    "--scheduler/--no-scheduler",
    default=True,
    show_default=True,
    help="Also run RQ's scheduler (needed for due-at-t+post builds and retry intervals).",
)
@click.option("--redis-wait", default=60.0, show_default=True, help="Seconds to wait for Redis at start.")
@click.option("--name", default=None, help="Worker name (default: RQ's).")
@click.pass_context
def worker(
    ctx: click.Context, stages: str, burst: bool, scheduler: bool, redis_wait: float, name: str | None
) -> None:
    """Run jobs: build clips, render highlights, upload them.

    The equivalent plain RQ command (same queues, serializer and scheduler):

    \b
      rq worker -u $GN_REDIS_URL -S rq.serializers.JSONSerializer --with-scheduler \\
        -w worker.rqworker.BoxWorker gn.<device>.build gn.<device>.render gn.<device>.upload
    """
    settings = settings_from(ctx, process="worker")
    wanted = [s.strip() for s in stages.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in keys.STAGES]
    if unknown or not wanted:
        fail(f"--queues {stages!r}: use stages from {', '.join(keys.STAGES)}, like build,render")
    conn = connect(settings)
    if not wait_for_redis(conn, redis_wait):
        fail(
            f"Redis at GN_REDIS_URL is not answering after {redis_wait:g} s: "
            "start redis-server or fix the URL",
            1,
        )
    preflight(settings, wanted)
    queues = [queue(settings, stage, conn) for stage in wanted]
    # RQ re-runs a job whose worker died (SIGKILL, power cut) at a maintenance pass after its heartbeat
    # lapses; RQ's default pass every 10 min would leave a press waiting that long.
    box = BoxWorker(
        queues, connection=conn, serializer=SERIALIZER, name=name, maintenance_interval=MAINTENANCE_SECONDS
    )
    event(log, "worker_start", queues=[q.name for q in queues], scheduler=scheduler)
    box.work(with_scheduler=scheduler, burst=burst, logging_level=settings.log_level.upper())


def preflight(settings: Settings, stages: list[str]) -> None:
    """Run `worker.<stage>.check_config(settings)` for each stage served, before any job is taken.

    A stage's configuration error (e.g. a missing logo) stops the worker with one line, instead of
    failing every job.
    """
    for stage in stages:
        try:
            module = importlib.import_module(f"worker.{stage}")
        except ModuleNotFoundError:
            continue
        check = getattr(module, "check_config", None)
        if check is not None:
            try:
                check(settings)
            except ValueError as exc:
                fail(str(exc))
