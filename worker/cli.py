"""`gravanois worker` (RQ's worker on this device's queues) and `gravanois scheduler` (one per device)."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
from typing import Any

import click

from common.cli import fail, redis_or_fail, settings_from
from common.log import event, get_logger
from common.pipeline import Stage, queue
from common.proc import kill_children, spawn, stop
from common.redisconn import SERIALIZER, connect, wait_for_redis
from common.settings import Settings, to_env
from worker import ahead as ahead_mod
from worker.rqworker import BoxWorker
from worker.scheduler import Scheduler

log = get_logger(__name__)

# Seconds between a worker's own registry clean-ups (RQ's default: 600); the scheduler takes back
# abandoned jobs within seconds anyway, this is the fallback when no scheduler runs.
MAINTENANCE_SECONDS = 60
REDIS_WAIT_HELP = "Seconds to wait for Redis at start."


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
    help="Also run the device's scheduler as a child (retries, reclaiming dead workers' jobs); "
    "supervisord runs one `gravanois scheduler` instead.",
)
@click.option("--redis-wait", default=60.0, show_default=True, help=REDIS_WAIT_HELP)
@click.option("--name", default=None, help="Worker name (default: gn.<device>.<random hex>).")
@click.pass_context
def worker(
    ctx: click.Context, stages: str, burst: bool, scheduler: bool, redis_wait: float, name: str | None
) -> None:
    """Run jobs: build clips, render highlights, upload them.

    The equivalent plain RQ command (same queues, serializer, job functions and failure policy; it
    reads settings from the environment and .env only):

    \b
      rq worker -u $GN_REDIS_URL -S rq.serializers.JSONSerializer \\
        -w worker.rqworker.BoxWorker gn.<device>.build gn.<device>.render gn.<device>.upload
    """
    settings = settings_from(ctx, process="worker")
    wanted = [s.strip() for s in stages.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in Stage.__members__.values()]
    if unknown or not wanted:
        fail(f"--queues {stages!r}: use stages from {', '.join(Stage)}, like build,render")
    conn = redis_or_fail(settings, redis_wait)
    preflight(settings, wanted)
    queues = [queue(settings, stage, conn) for stage in wanted]
    box = BoxWorker(
        queues,
        connection=conn,
        serializer=SERIALIZER,
        name=name,
        maintenance_interval=MAINTENANCE_SECONDS,
        settings=settings,
    )
    child = SchedulerChild(settings) if scheduler else None
    if child is not None:
        child.start()
        box.on_maintenance = child.keep_alive
    event(log, "worker_start", queues=[q.name for q in queues], scheduler=scheduler)
    try:
        box.work(burst=burst, logging_level=settings.log_level.upper())
    finally:
        if child is not None:
            child.stop()


class SchedulerChild:
    """`gravanois scheduler` as a child of a worker, with the worker's settings; it dies with the worker.

    Every worker started this way runs one; the scheduler's own lock makes one of them lead.
    """

    def __init__(self, settings: Settings) -> None:
        self.env = {**os.environ, **to_env(settings)}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start (or restart) the child."""
        self.proc = spawn([sys.executable, "-m", "common.cli", "scheduler"], env=self.env)

    def keep_alive(self) -> None:
        """Restart the child if it died (a bug, the OOM killer): a worker never runs without one."""
        if self.proc is not None and self.proc.poll() is not None:
            event(log, "scheduler_restart", 30, exit_code=self.proc.returncode)
            self.start()

    def stop(self) -> None:
        """Stop the child at the worker's exit (it gives its lock up)."""
        if self.proc is not None:
            stop(self.proc, grace=5.0, first=signal.SIGTERM)


@click.command()
@click.option("--redis-wait", default=60.0, show_default=True, help=REDIS_WAIT_HELP)
@click.pass_context
def scheduler(ctx: click.Context, redis_wait: float) -> None:
    """Move due jobs (retries, uploads at opening time) onto their queues; take back dead workers' jobs.

    One runs per device (a lock that lapses within seconds elects it); it survives Redis restarts.
    """
    settings = settings_from(ctx, process="scheduler")
    conn = connect(settings)
    if not wait_for_redis(conn, redis_wait):
        event(log, "scheduler_redis_wait", 30, seconds=redis_wait)  # it keeps trying in its loop
    stopping: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    Scheduler(settings, conn).run(lambda: bool(stopping))


def preflight(settings: Settings, stages: list[str]) -> None:
    """Run `worker.<stage>.check_config(settings)` for each stage served, before any job is taken.

    A stage's configuration error (e.g. a missing logo) stops the worker with one line, instead of
    failing every job.
    """
    for stage in stages:
        module = importlib.import_module(f"worker.{stage}")
        check = getattr(module, "check_config", None)
        if check is not None:
            try:
                check(settings)
            except ValueError as exc:
                fail(str(exc))


@click.command()
@click.option("--redis-wait", default=60.0, show_default=True, help=REDIS_WAIT_HELP)
@click.pass_context
def ahead(ctx: click.Context, redis_wait: float) -> None:
    """Watermark each camera's newest segments before any press (one per device, low CPU priority).

    A highlight is then ready about a second after its post-roll, whatever its length. With
    GN_WM_AHEAD=false (or no progressive render) it deletes its cache and only waits for SIGTERM.
    """
    settings = settings_from(ctx, process="ahead")
    stopping: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        # Stop at once, even in the middle of a batch: its ffmpeg is killed and its temp file removed.
        if stopping:
            return  # a second signal must not cut the clean-up short
        stopping.append(signum)
        # Python swallows an exception raised where it runs at-fork hooks or finalizers (a signal that
        # lands during the fork of an ffmpeg is handled in logging's at-fork hook): so the child is
        # killed here too, and the loop also stops on the flag between batches.
        kill_children(reap=False)
        raise Stopping

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        off = ahead_mod.off_reason(settings)
        if off:
            ahead_mod.remove_cache(settings)
            event(log, "ahead_off", reason=off)
            while True:
                signal.pause()
        ahead_mod.lower_priority()
        conn = connect(settings)
        if not wait_for_redis(conn, redis_wait):
            event(log, "ahead_redis_wait", 30, seconds=redis_wait)  # it keeps trying in its loop
        ahead_mod.Ahead(settings, conn, lambda: bool(stopping)).run()
    except Stopping:
        event(log, "ahead_stop", signal=stopping[0])
    finally:
        # The signal may have cut a batch's spawn short: no ffmpeg may outlive us, nor its temp file.
        kill_children()
        ahead_mod.remove_unfinished(settings)


class Stopping(BaseException):
    """SIGTERM/SIGINT reached `gravanois ahead` (a BaseException: no `except Exception` swallows it)."""
