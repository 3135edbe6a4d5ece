"""Render stage: raw clip → watermarked clip, thumbnail and sidecar in the output dir; then upload.

Crash-safe order: outputs are written under temp names and renamed; the new sidecar (with the
output's sha256) is written next; only then the raw clip and the old sidecar are removed. A re-run
finds finished outputs by that sha256 and only fixes what is left; temp files of a crash are removed
and the work redone. Failures are recorded by `on_render_failure`, RQ's failure callback, which runs
on EVERY failed attempt (and for a job abandoned by a killed worker); the last attempt marks the
sidecar failed and counts it once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from rq import Callback, get_current_job
from rq.job import Job

from common import sidecar
from common.ffmpeg import FFmpegError, probe
from common.fsutil import TMP_MARK, atomic_output, sha256_file
from common.log import event, get_logger
from common.redisconn import incr, note_highlight, queue, retry_policy
from common.settings import Settings, SettingsError
from common.timeutil import iso, parse_iso
from common.watermark import Watermark
from worker import context, engines, retention

log = get_logger(__name__)

FUNCTION = "worker.render.render_highlight"
FAILURE_CALLBACK = "worker.render.on_render_failure"
JOB_TIMEOUT = 1800
PROGRESS_EVERY = 1.0  # seconds between job.meta saves
WATERMARKED, FAILED = "watermarked", "failed"
VERTICAL_SUFFIX = "_vertical"
IMAGE_CODECS = ("png", "mjpeg", "webp", "bmp", "gif", "tiff", "qoi")


def check_config(settings: Settings) -> None:
    """Stop the worker at start when a logo is missing or unreadable (not a crash loop per job)."""
    for name, logo in (("GN_WM_LOGO", settings.wm_logo), ("GN_WM_LOGO2", settings.wm_logo2)):
        # With GN_WM_AT=record the recorder burns the logo in (and checks it); this stage never reads it.
        if logo is None or settings.wm_at == "record":
            continue
        path = Path(logo)
        if not path.is_file():
            raise SettingsError(
                f"{name}={path} does not exist: point it at a PNG logo (e.g. assets/logo.png)"
            )
        try:
            with open(path, "rb") as fh:
                head = fh.read(8)
        except OSError as exc:
            raise SettingsError(
                f"{name}={path} cannot be read ({exc.strerror}): fix its permissions"
            ) from None
        if not head:
            raise SettingsError(f"{name}={path} is empty: point it at a PNG logo (e.g. assets/logo.png)")
        try:
            # ffprobe "reads" almost anything (by its extension, or a text file as ANSI art): insist on
            # an image codec that found a picture.
            info = probe(path, timeout=20)
            readable = info.codec in IMAGE_CODECS and info.width > 0
        except FFmpegError:
            readable = False
        if not readable:
            raise SettingsError(
                f"{name}={path} is not an image ffmpeg can read: point it at a PNG logo, like assets/logo.png"
            ) from None
    if settings.wm_engine == "moviepy":
        try:
            import moviepy  # noqa: F401
        except ImportError:
            raise SettingsError(
                "GN_WM_ENGINE=moviepy but moviepy is not installed: pip install moviepy, or use ffmpeg"
            ) from None


class RenderFailed(RuntimeError):
    """A render attempt failed; the message is the reason shown by `gravanois failed list`."""


def job_id_for(settings: Settings, press_id: str, stage: str) -> str:
    """The RQ job id of a highlight's stage job (`build_job_id` + `-render`/`-upload`)."""
    return f"gn-{settings.device_id}-{press_id}-{stage}"


def enqueue_render(settings: Settings, conn: redis.Redis, sidecar_path: Path, press_id: str) -> Job:
    """Enqueue a render job with the retry policy, failure callback and failure TTL (for the build stage)."""
    return queue(settings, "render", conn).enqueue(
        FUNCTION,
        str(sidecar_path),
        job_id=job_id_for(settings, press_id, "render"),
        retry=retry_policy(settings),
        on_failure=Callback(FAILURE_CALLBACK),
        failure_ttl=int(settings.failure_ttl_days * 86400),
        job_timeout=JOB_TIMEOUT,
    )


def render_highlight(sidecar_path: str) -> str:
    """RQ job: watermark, thumbnail and sidecar into the output dir; returns the watermarked clip's path."""
    settings = context.settings()
    conn = context.connection()
    job = get_current_job()
    if job is not None:
        adopt_failure_handling(job, settings)
    return Render(settings, conn, Path(sidecar_path), job).run()


def adopt_failure_handling(job: Job, settings: Settings) -> None:
    """Make sure this job has our failure callback and failure TTL, however it was enqueued.

    Written to the job's hash too, so a retry or an abandoned-job cleanup (another process) sees them.
    """
    ttl = int(settings.failure_ttl_days * 86400)
    job.failure_ttl = ttl
    mapping: dict[str, Any] = {"failure_ttl": ttl}
    if job._failure_callback_name != FAILURE_CALLBACK:  # RQ keeps the name in this private field
        job._failure_callback_name = FAILURE_CALLBACK
        mapping["failure_callback_name"] = FAILURE_CALLBACK
    with contextlib.suppress(redis.RedisError):
        job.connection.hset(job.key, mapping=mapping)


class Render:
    """One attempt at one highlight."""

    def __init__(self, settings: Settings, conn: redis.Redis, path: Path, job: Job | None) -> None:
        self.settings, self.conn, self.job = settings, conn, job
        self.out_dir = settings.output_dir
        self.old_path = path
        self.path = locate_sidecar(settings, path)
        self.data = sidecar.load(self.path)
        self.stem = Path(self.data["file_name"]).stem
        self.raw = self.old_path.parent / self.data["file_name"]
        self.wm_path = self.out_dir / f"{self.stem}.mp4"
        self.thumb_path = self.out_dir / f"{self.stem}.jpg"
        self.vertical_path = self.out_dir / f"{self.stem}{VERTICAL_SUFFIX}.mp4"
        self.new_path = self.out_dir / f"{self.stem}.json"
        self.press_id = str(self.data.get("press_id") or self.stem)
        self.at = parse_iso(self.data["press_at"]) if self.data.get("press_at") else time.time()
        self.last_save = 0.0

    def run(self) -> str:
        """Finish the highlight (or just fix the sidecar if it is already finished)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.note("rendering")
        self.clean_leftovers()
        already = self.finished()
        if already:
            event(log, "render_already_done", press_id=self.press_id, clip=self.stem)
        else:
            self.render()
        self.remove_inputs()
        self.after_success(count=not already)
        return str(self.wm_path)

    # ---- steps

    def finished(self) -> bool:
        """True when the output dir already has this highlight, as its sidecar's sha256 says."""
        if not (self.new_path.is_file() and self.wm_path.is_file() and self.thumb_path.is_file()):
            return False
        done = sidecar.load(self.new_path)
        if done.get("wm_sha256") != sha256_file(self.wm_path):
            return False
        self.data, self.path = done, self.new_path
        return True

    def render(self) -> None:
        """Watermark (or take the record-time watermarked clip), thumbnail, then the new sidecar."""
        if not self.raw.is_file():
            raise RenderFailed(f"the raw clip {self.raw.name} is missing from {self.raw.parent}")
        try:
            info = probe(self.raw)
        except FFmpegError as exc:
            raise RenderFailed(f"the raw clip {self.raw.name} cannot be read: {exc}") from None
        if not info.width or not info.duration_sec:
            raise RenderFailed(f"the raw clip {self.raw.name} has no usable video (size or duration is 0)")
        started = time.monotonic()
        vertical = self.settings.wm_vertical and self.settings.wm_at == "render"
        if self.settings.wm_at == "record":
            # The recorder burnt the logo in already: the clip is final as it is. A hard link costs no
            # copy on the SD card; the raw name goes later, with the other inputs.
            with atomic_output(self.wm_path) as tmp:
                try:
                    os.link(self.raw, tmp)
                except OSError:  # another file system (or no links there): copy
                    shutil.copyfile(self.raw, tmp)
        else:
            with atomic_output(self.wm_path) as tmp, contextlib.ExitStack() as stack:
                vtmp = stack.enter_context(atomic_output(self.vertical_path)) if vertical else None
                engine = engines.get(self.settings.wm_engine)
                spec = engines.RenderJob(
                    src=self.raw,
                    dst=tmp,
                    wm=Watermark.from_settings(self.settings),
                    width=info.width,
                    height=info.height,
                    duration=info.duration_sec,
                    fps=info.fps,
                    crf=self.settings.wm_crf,
                    preset=self.settings.wm_preset,
                    encoder=self.settings.wm_encoder,
                    vertical_dst=vtmp,
                    timeout=JOB_TIMEOUT,
                )
                try:
                    engine.render(spec, self.progress)
                except engines.RenderError as exc:
                    raise RenderFailed(str(exc)) from None
        meta_wm = probe(self.wm_path).as_dict()
        with atomic_output(self.thumb_path) as ttmp:
            try:
                engines.make_thumbnail(
                    self.wm_path, ttmp, meta_wm["duration_sec"] / 2, self.settings.thumb_width
                )
            except engines.RenderError as exc:
                raise RenderFailed(str(exc)) from None
        self.data.update(
            type="highlight_wm",
            status=WATERMARKED,
            wm_path=str(self.wm_path),
            thumbnail_path=str(self.thumb_path),
            meta_wm=meta_wm,
            wm_sha256=sha256_file(self.wm_path),
            wm_size_bytes=self.wm_path.stat().st_size,
            wm_engine=self.settings.wm_engine if self.settings.wm_at == "render" else "record",
            render_seconds=round(time.monotonic() - started, 2),
            attempts=int(self.data.get("attempts") or 0) + 1,
            updated_at=iso(),
        )
        self.data.pop("last_error", None)
        if vertical:
            self.data["wm_vertical_path"] = str(self.vertical_path)
        sidecar.save(self.new_path, self.data)
        self.path = self.new_path
        self.progress(100.0, force=True)

    def remove_inputs(self) -> None:
        """Outputs are complete: the raw clip goes first, then the old sidecar (a re-run still finds us)."""
        if self.raw.parent.resolve() != self.out_dir.resolve():
            with contextlib.suppress(FileNotFoundError):
                self.raw.unlink()
        if self.old_path.resolve() != self.new_path.resolve():
            with contextlib.suppress(FileNotFoundError):
                self.old_path.unlink()
        if self.data.get("status") != WATERMARKED and self.data.get("status") in (FAILED, "queued"):
            self.data = sidecar.update(self.new_path, status=WATERMARKED)

    def after_success(self, count: bool = True) -> None:
        """Count (once per highlight), note, enqueue the upload, and keep the output dir bounded."""
        if count:
            incr(self.conn, self.settings, "renders_ok")
        uploading = self.settings.upload_enabled
        if uploading:
            self.enqueue_upload()
        self.note("uploading" if uploading else "done", wm_path=str(self.wm_path))
        event(log, "render_done", press_id=self.press_id, clip=self.wm_path.name, upload=uploading)
        try:
            retention.enforce(self.settings, protect={self.stem})
        except OSError as exc:
            event(log, "retention_error", logging.WARNING, error=str(exc))

    def enqueue_upload(self) -> None:
        """The upload job for the new sidecar, unless one with its id is already waiting or done."""
        from worker.upload import job_timeout

        job_id = job_id_for(self.settings, self.press_id, "upload")
        q = queue(self.settings, "upload", self.conn)
        with contextlib.suppress(Exception):
            existing = Job.fetch(job_id, connection=self.conn, serializer=q.serializer)
            if existing.get_status(refresh=False) not in ("failed", "stopped", "canceled"):
                return
        q.enqueue(
            "worker.upload.upload_highlight",
            str(self.new_path),
            job_id=job_id,
            retry=retry_policy(self.settings),
            failure_ttl=int(self.settings.failure_ttl_days * 86400),
            job_timeout=job_timeout(self.settings, int(self.data.get("wm_size_bytes") or 0)),
        )

    # ---- helpers

    def clean_leftovers(self) -> None:
        """Temp files of this highlight left by a crashed attempt (their writer is gone: we are the job)."""
        for f in self.out_dir.glob(f"{TMP_MARK}*"):
            if self.stem in f.name:
                with contextlib.suppress(FileNotFoundError):
                    f.unlink()
                event(log, "render_leftover_removed", file=f.name)

    def progress(self, pct: float, force: bool = False) -> None:
        """Store the percent in job.meta['progress'], at most once a second."""
        if self.job is None:
            return
        t = time.monotonic()
        if not force and t - self.last_save < PROGRESS_EVERY:
            return
        self.last_save = t
        self.job.meta["progress"] = round(pct, 1)
        with contextlib.suppress(redis.RedisError):
            self.job.save_meta()

    def note(self, state: str, **fields: str) -> None:
        """The highlight's state for `gravanois status` (Redis trouble must not fail the render)."""
        with contextlib.suppress(redis.RedisError):
            note_highlight(self.conn, self.settings, self.press_id, self.at, state=state, **fields)


def locate_sidecar(settings: Settings, path: Path) -> Path:
    """The sidecar as given, or, when a finished earlier attempt moved it, its copy in the output dir."""
    if path.is_file():
        return path
    moved = settings.output_dir / path.name
    if moved.is_file():
        return moved
    raise RenderFailed(f"the sidecar {path.name} is missing from {path.parent} and {settings.output_dir}")


def failure_reason(exc_type: type[BaseException] | None, exc: BaseException | None) -> str:
    """One line saying why an attempt failed."""
    name = exc_type.__name__ if exc_type else "error"
    if name == "AbandonedJobError":
        return "the worker died during the render (killed or crashed); RQ's cleanup took the job back"
    if name == "JobTimeoutException":
        return f"the render took longer than its job timeout: {exc}"
    text = str(exc).strip().splitlines()[-1] if exc is not None and str(exc).strip() else name
    return text if isinstance(exc, RenderFailed) else f"{name}: {text}"


def on_render_failure(
    job: Job,
    connection: redis.Redis,
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    tb: TracebackType | Any,
) -> None:
    """RQ failure callback: runs on every failed attempt (and for an abandoned job) before RQ decides.

    `job.retries_left` is not yet decremented here, so no retries left means this was the last attempt.
    """
    settings = context.settings()
    reason = failure_reason(exc_type, exc)
    final = not job.should_retry
    failures = [*job.meta.get("failures", []), round(time.time(), 3)][-20:]
    job.meta.update(error=reason, failed_at=iso(), failures=failures)
    with contextlib.suppress(redis.RedisError):
        job.save_meta()
    data: dict[str, Any] = {}
    with contextlib.suppress(RenderFailed, OSError, ValueError, IndexError):
        path = locate_sidecar(settings, Path(str(job.args[0])))
        data = sidecar.load(path)
        changes: dict[str, Any] = {"last_error": reason, "attempts": int(data.get("attempts") or 0) + 1}
        if final and data.get("status") != WATERMARKED:
            changes["status"] = FAILED
        data = sidecar.update(path, **changes)
    press_id = str(data.get("press_id") or job.id)
    at = parse_iso(data["press_at"]) if data.get("press_at") else time.time()
    level = logging.ERROR if final else logging.WARNING
    event(log, "render_failed" if final else "render_retry", level, press_id=press_id, error=reason)
    if final:
        incr(connection, settings, "renders_failed")
        with contextlib.suppress(redis.RedisError):
            note_highlight(connection, settings, press_id, at, state="failed", error=reason)
