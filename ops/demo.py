"""`gravanois demo`: the whole pipeline on a synthetic camera, on a machine with nothing configured.

It starts a private redis-server (temp dir, free loopback port), a recorder on ffmpeg's test pattern,
the ahead encoder, a worker with the device's scheduler and the web app; waits for the pre-roll,
presses, waits for the highlight, prints the watermarked clip, its thumbnail and its sidecar JSON, and
stops everything it started.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import click
import redis

from common import ids, keys
from common.cli import fail, settings_from
from common.log import event, get_logger, setup_logging
from common.pipeline import HighlightState
from common.proc import spawn, stop
from common.redisconn import connect, members, text
from common.segments import SegmentIndex
from common.settings import Settings, to_env

log = get_logger(__name__)

CAMERA = "cam1"
# Generous: a Pi renders a short clip in seconds, but a first run may find a cold SD card.
STARTUP_TIMEOUT = 60.0
RESULT_TIMEOUT = 300.0


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def redis_args(port: int, directory: Path) -> list[str]:
    """A throw-away redis-server: foreground, loopback only, no persistence."""
    return [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(directory),
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "yes",
    ]


def gravanois_args(*args: str) -> list[str]:
    """A `gravanois` child of this very installation that reads no `.env` (the demo passes everything)."""
    return [sys.executable, "-m", "common.cli", "--env-file", os.devnull, *args]


class Box:
    """The demo's processes: each one's output goes to a log file in the demo's data dir."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.procs: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GN_")}
        self.env.update(to_env(settings))

    def start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        """Start a child that dies with us (PR_SET_PDEATHSIG) and logs to `<log_dir>/<name>.log`."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        out = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop_all
        proc = spawn(args, env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append((name, proc, out))
        event(log, "demo_started", logging.DEBUG, child=name, pid=proc.pid)
        return proc

    def check_alive(self) -> None:
        """Stop the demo with the log tail of a process that died."""
        for name, proc, _ in self.procs:
            if proc.poll() is not None:
                fail(f"the {name} stopped (exit {proc.returncode}); its log:\n{self.tail(name)}", 1)

    def tail(self, name: str, lines: int = 15) -> str:
        """The last lines of a process's log."""
        path = self.log_dir / f"{name}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop_all(self) -> None:
        """SIGTERM in reverse start order (RQ warm shutdown, clean ffmpeg stop), then wait."""
        for name, proc, out in reversed(self.procs):
            code = stop(proc, grace=15.0, first=signal.SIGTERM)
            out.close()
            event(log, "demo_stopped", logging.DEBUG, child=name, exit=code)
        self.procs.clear()


def wait_until(what: str, done: Callable[[], float | bool], total: float, timeout: float, box: Box) -> None:
    """Poll `done()` (a bool or progress towards `total`): a progress bar on a terminal, lines otherwise."""
    deadline = time.monotonic() + timeout
    tty = sys.stderr.isatty()
    last_line = 0.0
    shown = 0
    bar_cm = click.progressbar(length=max(1, int(total)), label=what, file=sys.stderr) if tty else None
    with bar_cm if bar_cm is not None else contextlib.nullcontext() as bar:
        while True:
            box.check_alive()
            value = done()
            progress = total if value is True else float(value or 0)
            if bar is not None:
                step = min(int(progress), int(total)) - shown
                if step > 0:
                    bar.update(step)
                    shown += step
            elif time.monotonic() - last_line >= 2 or progress >= total:
                click.echo(f"{what}: {min(progress, total):.0f}/{total:.0f} s", err=True)
                last_line = time.monotonic()
            if progress >= total:
                return
            if time.monotonic() > deadline:
                fail(f"gave up waiting for {what} after {timeout:.0f} s; logs are in {box.log_dir}", 1)
            time.sleep(0.25)


def buffered_seconds(index: SegmentIndex) -> float:
    """Seconds of closed segments the recorder has indexed so far."""
    segs = index.all()
    return segs[-1].end - segs[0].start if segs else 0.0


@contextlib.contextmanager
def demo_dirs(data_dir: Path | None) -> Iterator[tuple[Path, Path]]:
    """(data dir, scratch dir): the data dir is kept for its outputs; the scratch (buffer, Redis) is not."""
    scratch = Path(tempfile.mkdtemp(prefix="gravanois-demo-scratch-"))
    data = data_dir or Path(tempfile.mkdtemp(prefix="gravanois-demo-"))
    try:
        yield data.resolve(), scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@click.command()
@click.option("--pre", default=10.0, show_default=True, help="Seconds before the press in the demo clip.")
@click.option("--post", default=3.0, show_default=True, help="Seconds after the press in the demo clip.")
@click.option(
    "--source",
    default="testsrc",
    show_default=True,
    help="What the demo records: the synthetic camera (testsrc, or testsrc:WxH@FPS) or a camera's URL.",
)
@click.option(
    "--data-dir",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the highlight and the logs go (default: a new temp dir, printed at the end).",
)
@click.option(
    "--keep",
    is_flag=True,
    help="Keep the box running after the highlight (Ctrl-C stops it), to open the court page.",
)
@click.pass_context
def demo(ctx: click.Context, pre: float, post: float, source: str, out_dir: Path | None, keep: bool) -> None:
    """Run the whole pipeline once on a synthetic camera and print the finished highlight.

    Needs only ffmpeg and redis-server: a private Redis, a recorder, a worker, the web app and a
    press, all stopped again at the end (or at Ctrl-C, with --keep). Uses no `.env` camera or Redis
    setting, and no backend.
    """
    for tool in ("ffmpeg", "ffprobe", "redis-server"):
        if shutil.which(tool) is None:
            package = "redis-server" if tool == "redis-server" else "ffmpeg"
            fail(f"{tool} is not installed: run `sudo apt-get install -y {package}` (or ./run.sh setup)")
    if pre < 0 or post < 0 or pre + post <= 0:
        fail("--pre and --post must not be negative and must add up to more than 0 seconds")
    with demo_dirs(out_dir) as (data, scratch):
        port = free_port()
        settings = settings_from(
            ctx,
            process="demo",
            device_id=f"demo-{uuid.uuid4().hex[:8]}",
            redis_url=f"redis://127.0.0.1:{port}/0",
            data_dir=data,
            buffer_dir=scratch / "buffer",
            cameras=json.dumps({CAMERA: source}),
            pre_seconds=pre,
            post_seconds=post,
            # Retention must keep the window plus the wait for the closing segment, whatever GN_SEG_TIME is.
            buffer_seconds=pre + post + 60,
            cooldown_seconds=0.0,
            open_hours="",
            api_base="",
            # The children log JSON lines to their files; the demo itself talks to the person watching.
            log_format="json",
            web_bind="127.0.0.1",
            web_port=free_port(),
        )
        setup_logging("demo", settings.log_level, "auto")
        box = Box(settings, data / "logs")
        try:
            result = run_demo(box, settings, scratch, pre, post)
            show(result, data, settings)
            if keep:
                click.echo("the box keeps running: Ctrl-C stops it", err=True)
                with contextlib.suppress(KeyboardInterrupt):
                    while True:
                        box.check_alive()
                        time.sleep(1)
        finally:
            box.stop_all()


def run_demo(box: Box, settings: Settings, scratch: Path, pre: float, post: float) -> dict[str, Path]:
    """Start Redis, recorder and worker; press after the pre-roll; wait for the rendered highlight."""
    redis_dir = scratch / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    conn = connect(settings)
    port = conn.connection_pool.connection_kwargs["port"]
    click.echo(f"starting a private Redis on 127.0.0.1:{port}", err=True)
    box.start("redis", redis_args(port, redis_dir))
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        box.check_alive()
        try:
            conn.ping()
            break
        except redis.RedisError:
            if time.monotonic() > deadline:
                fail(f"the private Redis did not answer; its log is in {box.log_dir}", 1)
            time.sleep(0.1)
    click.echo("starting the recorder, the ahead encoder, a worker and the web app", err=True)
    box.start("recorder", gravanois_args("recorder", "--camera", CAMERA))
    box.start("ahead", gravanois_args("ahead"))
    box.start("worker", gravanois_args("worker"))
    box.start("web", gravanois_args("web"))
    index = SegmentIndex(conn, settings.device_id, CAMERA)
    # The pre-roll, plus one segment so that the window's start is surely covered.
    need = pre + settings.seg_time
    wait_until("recording the pre-roll", lambda: buffered_seconds(index), need, need + STARTUP_TIMEOUT, box)

    press = subprocess.run(
        gravanois_args("trigger", "press", "--camera", CAMERA),
        env=box.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if press.returncode != 0:
        fail(f"the press failed: {press.stderr.strip() or press.stdout.strip()}", 1)
    newest = members(conn.zrevrange(keys.highlights(settings.device_id), 0, 0))
    if not newest:
        fail(f"the press was accepted but no highlight was recorded: {press.stdout.strip()}", 1)
    press_id = text(newest[0])
    click.echo(f"pressed: highlight {press_id} covers {pre:g} s before and {post:g} s after", err=True)
    name = ids.stem_of_press_id(press_id)
    sidecar_path = settings.output_dir / f"{name}.json"
    started = time.monotonic()
    states: list[str] = []

    def rendered() -> float | bool:
        state = text(conn.hget(keys.highlight(settings.device_id, press_id), "state") or b"")
        if state and (not states or states[-1] != state):
            states.append(state)
            if not sys.stderr.isatty():
                click.echo(f"highlight {state}", err=True)
        if state == HighlightState.FAILED:
            fail(f"the highlight failed; see `gravanois failed` and the logs in {box.log_dir}", 1)
        if sidecar_path.is_file():
            with contextlib.suppress(OSError, ValueError):
                if json.loads(sidecar_path.read_text()).get("thumbnail_path"):
                    return True
        # The bar follows the post-roll in real time, then waits at its end for the cut and the render.
        return min(time.monotonic() - started, post)

    wait_until("post-roll, cut and watermark", rendered, post + 1, post + RESULT_TIMEOUT, box)
    data = json.loads(sidecar_path.read_text())
    return {
        "clip": Path(data["wm_path"]),
        "thumbnail": Path(data["thumbnail_path"]),
        "sidecar": sidecar_path,
    }


def show(result: dict[str, Path], data: Path, settings: Settings) -> None:
    """Print where the highlight is, its court page, and its sidecar."""
    click.echo("highlight ready:")
    for label in ("clip", "thumbnail", "sidecar"):
        click.echo(f"  {label:<10} {result[label]}")
    page = f"http://{settings.web_bind}:{settings.web_port}/c/{CAMERA}"
    click.echo(f"  {'court page':<10} {page}  (while the demo runs: --keep)")
    click.echo(f"sidecar {result['sidecar'].name}:")
    click.echo(result["sidecar"].read_text().rstrip())
    click.echo(f"outputs and logs stay in {data} (delete it when done)")
