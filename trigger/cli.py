"""`gravanois trigger press` (one-shot) and `gravanois trigger listen` (ENTER, GPIO or serial button)."""

from __future__ import annotations

import signal
import sys
import time
from types import FrameType

import click
import redis
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from common import journal, keys
from common.cli import fail, settings_from
from common.log import event, get_logger
from common.pipeline import Stage, failure_of
from common.redisconn import SERIALIZER, connect
from common.settings import TRIGGER_INPUTS, Settings, SettingsError
from common.timeutil import now, parse_iso
from trigger import press as press_mod
from trigger.inputs.enter import EnterInput
from trigger.inputs.gpio import GpioInput
from trigger.inputs.serial import SerialInput
from trigger.listen import Listener

log = get_logger(__name__)


@click.group()
def trigger() -> None:
    """Presses: one now from the command line, or listen to ENTER, a GPIO button or a serial button box."""


@trigger.command()
@click.option("--camera", default=press_mod.ALL, show_default=True, help="Camera id, or all.")
@click.option(
    "--at", "at_text", default=None, help="Press time, ISO 8601 (default: now), e.g. 2025-08-17T19:50:00Z."
)
@click.option("--pre", type=float, default=None, help="Override GN_PRE_SECONDS.")
@click.option("--post", type=float, default=None, help="Override GN_POST_SECONDS.")
@click.option("--wait", is_flag=True, help="Wait for the finished (rendered) highlight; print its path last.")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds --wait waits before giving up.")
@click.pass_context
def press(
    ctx: click.Context,
    camera: str,
    at_text: str | None,
    pre: float | None,
    post: float | None,
    wait: bool,
    timeout: float,
) -> None:
    """Press the button once: schedules the highlight's build job and prints its job id and clip path.

    A camera that is not recording is refused at once (exit 1, the reason on standard error). With
    Redis down the press is journalled (exit 0) and `gravanois trigger listen` enqueues it, with its
    original time, as soon as Redis answers again; if the journal cannot be written either (a full data
    disk), the press is not saved and the exit code is 1.
    """
    at = now()  # the press time is taken before anything else
    settings = settings_from(ctx, process="trigger", pre_seconds=pre, post_seconds=post)
    if at_text:
        try:
            at = parse_iso(at_text)
        except ValueError:
            fail(f"--at {at_text!r} is not a time: use ISO 8601 like 2025-08-17T19:50:00Z")
        problem = journal.press_time_problem(at, now())
        if problem is not None:
            fail(f"--at {at_text}: {problem}")
    try:
        cameras = press_mod.cameras_for(settings, camera)
    except SettingsError as exc:
        fail(f"--camera: {exc}")
    conn = connect(settings)
    with_redis = True
    try:
        conn.ping()
        press_mod.replay(settings, conn)  # older presses journalled during an outage go first
    except redis.RedisError:
        with_redis = False
    except OSError as exc:  # an unreadable journal must not stop today's press (it stays for the listener)
        event(log, "journal_unreadable", level=30, dir=str(settings.journal_dir), error=str(exc))
    outcomes = [
        press_mod.submit(settings, conn, p) for p in press_mod.make_presses(settings, cameras, at, "cli")
    ]
    for o in outcomes:
        click.echo(o.line())
    failed = [o for o in outcomes if o.state in (press_mod.REFUSED, press_mod.NOT_SAVED)]
    if failed:
        fail("; ".join(_not_taken(o) for o in failed), 1)
    if any(o.state == press_mod.JOURNALLED for o in outcomes) or not with_redis:
        click.echo(
            f"Redis is not answering: the press is journalled in {settings.journal_dir} and "
            "`gravanois trigger listen` enqueues it with its original time when Redis is back",
            err=True,
        )
        if wait:
            fail("cannot --wait for a journalled press: start Redis (the listener enqueues it)", 1)
        return
    if not wait:
        return
    waited = [o for o in outcomes if o.state in (press_mod.SCHEDULED, press_mod.DUPLICATE)]
    if not waited:
        fail("no highlight to wait for: " + "; ".join(o.detail for o in outcomes), 1)
    deadline = time.monotonic() + timeout
    paths, errors = [], []
    for o in waited:
        try:
            paths.append(wait_final(conn, settings.device_id, o.press.press_id, deadline))
        except WaitError as exc:
            errors.append(f"{o.press.camera}: {exc}")
    if errors:
        fail("highlight failed: " + "; ".join(errors), 1)
    for p in paths:
        click.echo(p)


def _not_taken(o: press_mod.Outcome) -> str:
    """Why a press was not taken, for the presser: the camera is down, or nowhere could keep it."""
    if o.state == press_mod.REFUSED:
        return f"press refused: {o.detail}"
    return f"press for camera {o.press.camera} {o.detail}, then press again"


class WaitError(RuntimeError):
    """The highlight failed or did not finish in time; the message says why."""


def job_reason(job: Job) -> str:
    """Why a job failed (pipeline.failure_of), for the presser: without an exception's class name."""
    last = failure_of(job) or f"job {job.id} failed"
    head, sep, tail = last.partition(": ")
    return tail if sep and " " not in head else last


def wait_final(conn: redis.Redis, device: str, press_id: str, deadline: float) -> str:
    """Poll the press's build job, then its render job; the rendered path, or WaitError."""
    wait_job(conn, keys.job_id(device, press_id, Stage.BUILD), deadline)
    return wait_job(conn, keys.job_id(device, press_id, Stage.RENDER), deadline)


def wait_job(conn: redis.Redis, job_id: str, deadline: float) -> str:
    """Poll one job until it finishes (its result, as text); WaitError if it fails or `deadline` passes."""
    while True:
        if time.monotonic() > deadline:
            raise WaitError(f"timed out waiting for job {job_id}")
        try:
            job = Job.fetch(job_id, connection=conn, serializer=SERIALIZER)
            status = job.get_status(refresh=True)
        except NoSuchJobError:
            time.sleep(0.3)  # the render job appears once the build enqueues it
            continue
        if status == JobStatus.FINISHED:
            return str(job.return_value())
        if status == JobStatus.FAILED:
            raise WaitError(job_reason(job))
        if status in (JobStatus.STOPPED, JobStatus.CANCELED):
            raise WaitError(f"job {job_id} was {status.value}")
        time.sleep(0.3)


@trigger.command()
@click.option(
    "--input",
    "kind",
    # ENTER needs a terminal: only the other inputs can be GN_TRIGGER_INPUT, the supervised listener's.
    type=click.Choice(["enter", *TRIGGER_INPUTS]),
    default="enter",
    show_default=True,
    help="Where presses come from.",
)
@click.option(
    "--camera", default=None, help="Cameras an ENTER (or an unmapped button) presses (default: all)."
)
@click.option("--pin", type=int, default=None, help="Override GN_GPIO_PIN.")
@click.option("--port", default=None, help="Override GN_SERIAL_PORT.")
@click.pass_context
def listen(ctx: click.Context, kind: str, camera: str | None, pin: int | None, port: str | None) -> None:
    """Listen for presses until SIGTERM/SIGINT; also enqueues presses journalled while Redis was down.

    Exits 1 if an input stops by an error (supervisord then starts a fresh listener).
    """
    settings = settings_from(ctx, process=f"trigger-{kind}", gpio_pin=pin, serial_port=port)
    try:
        default = press_mod.cameras_for(settings, camera) if camera else None
        press_mod.button_map(settings)
    except SettingsError as exc:
        fail(str(exc))
    conn = connect(settings)
    listener = Listener(settings, conn, default=default)
    _on_signals(listener)
    source = start_input(kind, settings, listener)
    left = len(journal.pending(settings.journal_dir))
    event(log, "listener_start", input=kind, cameras=listener.default, journalled=left)
    try:
        listener.run()
    finally:
        source.close()
    if listener.died is not None:
        fail(f"{listener.died}; the listener exits so that it is started again", 1)


def start_input(kind: str, settings: Settings, listener: Listener) -> EnterInput | GpioInput | SerialInput:
    """Create and start the chosen input, wired to the listener (each input imports its library lazily)."""
    src: EnterInput | GpioInput | SerialInput
    if kind == "enter":
        src = EnterInput(sys.stdin, listener.on_button, listener.stop.set, listener.input_died)
    elif kind == "gpio":
        pins = sorted({int(b) for b in listener.buttons if b.isdigit()} or {settings.gpio_pin})
        try:
            src = GpioInput(pins, settings.gpio_debounce_ms, listener.on_button, settings.gpio_led_pin)
        except Exception as exc:  # gpiozero raises many kinds when no pin library or pin is usable
            fail(f"GPIO pins {pins} cannot be used ({exc}): run on a Raspberry Pi, or use --input enter")
        listener.on_accept, listener.on_refuse = src.accepted, src.refused
    else:
        src = SerialInput(
            settings.serial_port, settings.serial_baud, listener.on_button, listener.stop, listener.input_died
        )
    src.start()
    return src


def _on_signals(listener: Listener) -> None:
    """SIGTERM/SIGINT end the listener cleanly (presses not yet in Redis stay journalled)."""

    def stop(signum: int, frame: FrameType | None) -> None:
        listener.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
