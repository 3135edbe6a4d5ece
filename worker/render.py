"""Render stage: raw clip → watermarked clip, thumbnail and sidecar in the output dir; then upload.

Crash-safe order: outputs are written under temp names and renamed; the new sidecar (with the
output's sha256) is written next; only then the raw clip and the old sidecar are removed. A re-run
finds finished outputs by that sha256 and only fixes what is left; temp files of a crash are removed
and the work redone. Every path comes from the highlight's name (worker.files), never from the
sidecar's contents. Failed attempts are recorded by the worker's failure policy (worker.failures).
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import redis
from rq import get_current_job
from rq.job import Job

from common import sidecar
from common.counters import incr
from common.events import EventType
from common.ffmpeg import FFmpegError, MediaInfo, probe, run
from common.fsutil import TMP_MARK, atomic_output, link_or_copy, sha256_file, sha256_soon
from common.highlights import note_highlight
from common.log import event, get_logger
from common.pipeline import STAGES, HighlightState, SidecarStatus, Stage, enqueue
from common.settings import Settings, SettingsError
from common.timeutil import iso, parse_iso
from common.watermark import Watermark
from worker import context, engines, files, pieces, recipe, retention

log = get_logger(__name__)

JOB_TIMEOUT = STAGES[Stage.RENDER].timeout
PROGRESS_EVERY = 1.0  # seconds between job.meta saves
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


def render_highlight(sidecar_name: str) -> str:
    """RQ job: watermark, thumbnail and sidecar into the output dir; returns the watermarked clip's path.

    `sidecar_name` is the raw clip's sidecar file name (a path is accepted only inside the box's dirs).
    """
    settings = context.settings()
    highlight = files.from_job_arg(settings, sidecar_name)
    return Render(settings, context.connection(), highlight, get_current_job()).run()


class Render:
    """One attempt at one highlight."""

    def __init__(
        self, settings: Settings, conn: redis.Redis, highlight: files.HighlightFiles, job: Job | None
    ) -> None:
        self.settings, self.conn, self.job = settings, conn, job
        self.out_dir = settings.output_dir
        path = highlight.current_sidecar()
        if path is None:
            raise RenderFailed(
                f"the sidecar {highlight.stem}.json is missing from {settings.clips_dir} and {self.out_dir}"
            )
        self.old_path = self.path = path
        self.data = sidecar.load(self.path)
        self.stem = highlight.stem
        self.raw = highlight.raw
        self.wm_path = highlight.video
        self.thumb_path = highlight.thumbnail
        self.vertical_path = highlight.vertical
        self.new_path = highlight.sidecar
        self.press_id = highlight.press_id
        self.at = parse_iso(self.data["press_at"]) if self.data.get("press_at") else time.time()
        self.last_save = 0.0

    def run(self) -> str:
        """Finish the highlight (or just fix the sidecar if it is already finished)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.note(HighlightState.RENDERING)
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
        """Watermark (join the progressive pieces, or one pass over the raw clip, or take the record-time
        watermarked clip), thumbnail, then the new sidecar."""
        if not self.raw.is_file():
            raise RenderFailed(f"the raw clip {self.raw.name} is missing from {self.raw.parent}")
        info = self.raw_facts()
        started = time.monotonic()
        if self.settings.wm_at == "record":
            # The recorder burnt the logo in already: the clip is final as it is. A hard link costs no
            # copy on the SD card; the raw name goes later, with the other inputs.
            with atomic_output(self.wm_path) as tmp:
                link_or_copy(self.raw, tmp)
            path, out = "record", None
        elif (out := self.join_pieces(info)) is not None:
            path = "progressive"
        else:
            self.single_pass(info)
            path = "single-pass"
        meta_wm = (out or probe(self.wm_path)).as_dict()  # one probe of the output, whichever path
        digest = sha256_soon(self.wm_path)  # hashed while the thumbnail is made
        with atomic_output(self.thumb_path) as ttmp:
            try:
                engines.make_thumbnail(
                    self.wm_path, ttmp, meta_wm["duration_sec"] / 2, self.settings.thumb_width
                )
            except engines.RenderError as exc:
                raise RenderFailed(str(exc)) from None
        self.data.update(
            type="highlight_wm",
            status=SidecarStatus.WATERMARKED,
            wm_path=str(self.wm_path),
            thumbnail_path=str(self.thumb_path),
            meta_wm=meta_wm,
            wm_sha256=digest(),
            wm_size_bytes=self.wm_path.stat().st_size,
            wm_engine=self.settings.wm_engine if self.settings.wm_at == "render" else "record",
            render_path=path,
            render_seconds=round(time.monotonic() - started, 2),
            attempts=int(self.data.get("attempts") or 0) + 1,
            updated_at=iso(),
        )
        self.data.pop("last_error", None)
        if self.vertical:
            self.data["wm_vertical_path"] = str(self.vertical_path)
        sidecar.save(self.new_path, self.data)
        self.path = self.new_path
        self.progress(100.0, force=True)

    @property
    def vertical(self) -> bool:
        """Whether this render also makes the 9:16 crop."""
        return self.settings.wm_vertical and self.settings.wm_at == "render"

    def raw_facts(self) -> MediaInfo:
        """The raw clip's codec, size, fps and duration: the build measured them (sidecar `meta`); they
        are probed again only when the file is not the one the build described."""
        meta = self.data.get("meta")
        if isinstance(meta, dict) and self.data.get("size_bytes") == self.raw.stat().st_size:
            with contextlib.suppress(TypeError, ValueError):
                info = MediaInfo(**{k: meta[k] for k in sidecar.META_FIELDS})
                if info.width and info.duration_sec:
                    return info
        try:
            info = probe(self.raw)
        except FFmpegError as exc:
            raise RenderFailed(f"the raw clip {self.raw.name} cannot be read: {exc}") from None
        if not info.width or not info.duration_sec:
            raise RenderFailed(f"the raw clip {self.raw.name} has no usable video (size or duration is 0)")
        return info

    def join_pieces(self, info: MediaInfo) -> MediaInfo | None:
        """The progressive path: the pieces the build encoded, joined by a stream copy; the output's
        facts. None when there are none (or they do not make the raw clip's duration): the single pass
        then does it all."""
        if not recipe.applies(self.settings):
            return None
        found = pieces.pieces_for(self.settings, self.data)
        if found is None:
            return None
        frame = 1 / (info.fps or 30)
        try:
            crowded = pieces.crowded_frames(found.facts, frame)
            if crowded is not None:
                raise FFmpegError(f"two frames {crowded} s apart where the pieces meet")
            with atomic_output(self.wm_path) as tmp:
                if found.joined is not None:
                    # The build joined them while the post-roll recorded: take that file as it is.
                    link_or_copy(found.joined, tmp)
                else:
                    end = (self.data.get("progressive") or {}).get("end")
                    args = pieces.join_args(found.paths, tmp, end)
                    run(args, 60 + info.duration_sec, what="join pieces")
                joined = probe(tmp)
                if abs(joined.duration_sec - info.duration_sec) > frame + 0.01:
                    raise FFmpegError(
                        f"the pieces last {joined.duration_sec:.3f} s, the clip {info.duration_sec:.3f} s"
                    )
        except (FFmpegError, ValueError) as exc:
            event(log, "progressive_fallback", 30, clip=self.stem, reason=str(exc))
            return None
        self.progress(100.0, force=True)
        return joined

    def single_pass(self, info: MediaInfo) -> None:
        """One ffmpeg (or MoviePy) run over the whole raw clip."""
        with atomic_output(self.wm_path) as tmp, contextlib.ExitStack() as stack:
            vtmp = stack.enter_context(atomic_output(self.vertical_path)) if self.vertical else None
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

    def remove_inputs(self) -> None:
        """Outputs are complete: the raw clip goes first, then the old sidecar (a re-run still finds us)."""
        pieces.remove(self.settings, self.stem)
        if self.raw.parent.resolve() != self.out_dir.resolve():
            with contextlib.suppress(FileNotFoundError):
                self.raw.unlink()
        if self.old_path.resolve() != self.new_path.resolve():
            with contextlib.suppress(FileNotFoundError):
                self.old_path.unlink()
        if self.data.get("status") in STAGES[Stage.RENDER].starts_from:
            self.data = sidecar.update(self.new_path, status=SidecarStatus.WATERMARKED)

    def after_success(self, count: bool = True) -> None:
        """Count (once per highlight), note, enqueue the upload, and keep the output dir bounded."""
        if count:
            incr(self.conn, self.settings, STAGES[Stage.RENDER].done_counter)
        uploading = self.settings.upload_enabled
        if uploading:
            self.enqueue_upload()
        state = HighlightState.UPLOADING if uploading else HighlightState.DONE
        self.note(state, EventType.HIGHLIGHT_DONE if count else None, wm_path=str(self.wm_path))
        event(log, "render_done", press_id=self.press_id, clip=self.wm_path.name, upload=uploading)
        try:
            retention.enforce(self.settings, protect={self.stem}, conn=self.conn)
        except OSError as exc:
            event(log, "retention_error", logging.WARNING, error=str(exc))

    def enqueue_upload(self) -> None:
        """The upload job for the finished sidecar (a no-op when one is already waiting or done)."""
        from worker.upload import job_timeout

        size = int(self.data.get("wm_size_bytes") or 0)
        timeout = job_timeout(self.settings, size)
        enqueue(
            self.settings,
            self.conn,
            Stage.UPLOAD,
            self.new_path.name,
            press_id=self.press_id,
            at=self.at,
            timeout=timeout,
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

    def note(self, state: HighlightState, fleet: EventType | None = None, **fields: str) -> None:
        """The highlight's state for `gravanois status` (Redis trouble must not fail the render)."""
        with contextlib.suppress(redis.RedisError):
            note_highlight(self.conn, self.settings, self.press_id, self.at, fleet, state=state, **fields)
