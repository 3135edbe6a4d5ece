"""Build stage: a press → the raw highlight clip (concat of the segments covering its window) + sidecar.

The job is enqueued at the press. It waits (bounded) for a closed segment reaching t+post (meanwhile,
with the progressive render on, watermarking the window's closed segments: worker.progressive), selects
segments by wall-clock overlap with [t-pre, t+post], checks each file (a zero-byte or garbage segment is
left out), joins them with `-c copy` into the clips dir (atomically) ending at t+post, writes the
sidecar, enqueues the render job and releases the pin. Missing or bad segments inside the window become
`gaps` in the sidecar; only a window that nothing covers fails the highlight.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from common import ids, sidecar
from common.budget import RenderPath
from common.counters import incr
from common.ffmpeg import FFmpegError, base_args, mp4_copy_args, probe, run
from common.fsutil import TMP_MARK, atomic_output, sha256_soon
from common.highlights import note_highlight
from common.journal import PressRecord, press_time_problem
from common.log import event, get_logger
from common.pipeline import STAGES, HighlightState, PermanentError, SidecarStatus, Stage, enqueue
from common.segments import GAP_TOLERANCE, Segment, SegmentIndex, runs
from common.settings import MAX_SIDE_SECONDS, Settings, SettingsError
from common.timeutil import iso, now
from common.verdict import verdict
from worker import ahead, budget, context, progressive, recipe
from worker.streamjoin import StreamJoin
from worker.tsfiles import clip_end, ts_problem

log = get_logger(__name__)

# How often the build looks for the segment closing t+post (a cheap Redis read).
POLL_SECONDS = 0.05
# A segment "reaches" t+post when it ends this close before it: the index's times are rounded to the
# millisecond. (It was 10 ms: a window could then miss its last few milliseconds, now and then.)
END_TOLERANCE = 0.002
_SOURCE = re.compile(r"^[A-Za-z0-9_.:-]{1,40}$")
# A clip this much shorter than the segments it joins lost some of them on the way.
DURATION_SLACK = 0.5


class BuildFailed(RuntimeError):
    """The highlight cannot be built; the message is the reason shown to the operator."""


class BadPress(BuildFailed, PermanentError):
    """The job's argument is not a valid press: retrying cannot help."""


def parse_press(raw: Any, settings: Settings, at_now: float | None = None) -> PressRecord:
    """Validate a job argument from Redis (maybe hostile or corrupt) into a PressRecord, or raise BadPress."""
    if not isinstance(raw, dict):
        raise BadPress(f"the build job needs a press object, got {type(raw).__name__}")
    unknown = set(raw) - {"camera", "at", "pre", "post", "source"}
    if unknown:
        raise BadPress(f"the press has unknown field(s) {sorted(unknown)}")
    camera = raw.get("camera")
    if not isinstance(camera, str) or not ids.is_camera_id(camera):
        raise BadPress(f"camera id {str(camera)[:40]!r} is not a valid camera id")
    try:
        settings.camera(camera)
    except SettingsError as exc:
        raise BadPress(str(exc)) from None
    numbers = {}
    for name in ("at", "pre", "post"):
        value = raw.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise BadPress(f"press {name} must be a number of seconds, got {str(value)[:40]!r}")
        numbers[name] = float(value)
    for name in ("pre", "post"):
        if not 0 <= numbers[name] <= MAX_SIDE_SECONDS:
            raise BadPress(f"press {name}={numbers[name]:g} s is outside 0-{MAX_SIDE_SECONDS:g} s")
    if numbers["pre"] + numbers["post"] <= 0:
        raise BadPress("press window is empty (pre + post = 0)")
    if numbers["pre"] + numbers["post"] > settings.buffer_seconds:
        raise BadPress(
            f"press window {numbers['pre'] + numbers['post']:g} s is longer than the "
            f"{settings.buffer_seconds:g} s the buffer keeps (GN_BUFFER_SECONDS)"
        )
    problem = press_time_problem(numbers["at"], now() if at_now is None else at_now)
    if problem:
        raise BadPress(problem)
    source = raw.get("source", "cli")
    if not isinstance(source, str) or not _SOURCE.fullmatch(source):
        raise BadPress(f"press source {str(source)[:40]!r} is not valid")
    return PressRecord(
        camera=camera, at=numbers["at"], pre=numbers["pre"], post=numbers["post"], source=source
    )


def concat_list(entries: list[Path | str]) -> str:
    """The concat demuxer's list file for these entries (segment files, absolute, or `concat:` URLs)."""
    lines = ["ffconcat version 1.0"]
    for entry in entries:
        text = entry if isinstance(entry, str) else str(entry.resolve())
        quoted = text.replace("'", "'\\''")
        lines.append(f"file '{quoted}'")
    return "\n".join(lines) + "\n"


def join_entries(groups: list[list[Path]]) -> list[Path | str]:
    """One concat-demuxer entry per run: a single file, or the concat protocol over the run's files.

    The concat protocol joins MPEG-TS cut from one stream byte for byte, timestamps untouched. The
    demuxer instead shifts each file by its duration, which ends with the last audio frame: up to one
    audio frame too far, leaving a hole (and a stretched video) at every join.
    """
    entries: list[Path | str] = []
    for files in groups:
        if len(files) == 1 or any("|" in str(f.resolve()) for f in files):
            entries += files
        else:
            entries.append("concat:" + "|".join(str(f.resolve()) for f in files))
    return entries


def concat_args(list_file: Path, out: Path, duration: float | None = None) -> list[str]:
    """ffmpeg: join MPEG-TS segments without re-encoding into an MP4 whose index is at the front.

    `duration` ends the clip there (at the window's end): a copy must start on a keyframe but can stop
    on any frame, so a long GOP lengthens the clip only at its start.
    """
    limit = ["-t", f"{duration:.3f}"] if duration is not None else []
    return [
        *base_args(),
        "-protocol_whitelist",
        "file,concat",
        "-f",
        "concat",
        "-safe",
        "0",
        "-i",
        str(list_file),
        *limit,
        *mp4_copy_args(out),
    ]


def find_gaps(
    segments: list[Segment], a: float, b: float, tol: float = GAP_TOLERANCE
) -> list[tuple[float, float]]:
    """Parts of [a, b] that no segment covers (segments sorted by start)."""
    gaps = []
    cursor = a
    for seg in segments:
        if seg.start > cursor + tol:
            gaps.append((cursor, min(seg.start, b)))
        cursor = max(cursor, seg.end)
        if cursor >= b:
            break
    if cursor < b - tol:
        gaps.append((cursor, b))
    return gaps


def end_wait(settings: Settings, conn: redis.Redis, camera: str) -> float:
    """How long past t+post the build waits for the segment closing its window: the stall limit the
    camera's recorder publishes (common.verdict). Longer without a segment, its watchdog has judged a
    stall and status and the press say the camera is not recording: the segment is not coming."""
    return verdict(conn, settings, camera, now()).stall_limit


def build_highlight(press: dict) -> str:
    """RQ job: build the raw clip and sidecar for one press, enqueue its render; returns the clip path.

    Failures go through the worker's failure policy (worker.failures): a BadPress is not retried.
    """
    settings = context.settings()
    p = parse_press(press, settings, now())
    return Build(settings, context.connection(), p).run()


class Build:
    """One attempt at one press's raw clip."""

    def __init__(self, settings: Settings, conn: redis.Redis, press: PressRecord) -> None:
        self.settings, self.conn, self.press = settings, conn, press
        self.index = SegmentIndex(conn, settings.device_id, press.camera)
        self.buffer = settings.camera_buffer_dir(press.camera)
        self.clip = settings.clips_dir / sidecar.clip_name(press)
        self.sidecar_path = sidecar.path_for(self.clip)
        # The raw clip's join, fed the window's segments as they close (worker.streamjoin).
        self.raw_join: StreamJoin | None = None
        self.raw_end = 0.0

    def run(self) -> str:
        """Wait for the window's end, concat, sidecar, enqueue render, unpin."""
        p = self.press
        note_highlight(self.conn, self.settings, p.press_id, p.at, state=HighlightState.BUILDING)
        a, b = p.window
        if self.sidecar_path.is_file() and self.clip.is_file():
            # An earlier attempt finished the clip but died before the render was enqueued.
            event(log, "build_already_done", press_id=p.press_id, clip=self.clip.name)
        else:
            self.remove_leftovers()
            pieces = self.start_pieces(b)
            try:
                self.build(pieces, a, b)
            finally:
                # Whatever ended the build, no join is left running (one that finished stays done).
                if self.raw_join is not None:
                    self.raw_join.abort("the build ended")
                if pieces is not None:
                    pieces.close()
            incr(self.conn, self.settings, STAGES[Stage.BUILD].done_counter)
        enqueue(self.settings, self.conn, Stage.RENDER, self.sidecar_path.name, press_id=p.press_id, at=p.at)
        self.index.unpin(p.press_id)
        note_highlight(
            self.conn, self.settings, p.press_id, p.at, state=HighlightState.BUILT, clip=str(self.clip)
        )
        event(log, "clip_built", camera=p.camera, press_id=p.press_id, clip=str(self.clip))
        return str(self.clip)

    def remove_leftovers(self) -> None:
        """An earlier attempt's unfinished clip (its writer is gone: this press's job is us now)."""
        for f in self.settings.clips_dir.glob(f"{TMP_MARK}*-{self.clip.name}"):
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
            event(log, "build_leftover_removed", file=f.name)

    def build(self, pieces: progressive.Encoder | None, a: float, b: float) -> None:
        """Wait for the window's end (making what can be made meanwhile), join, write the sidecar."""
        self.wait_for_end(b, pieces)
        segments = self.usable(self.index.covering(a, b))
        if not segments:
            if pieces is not None:
                pieces.give_up("nothing to render")
            raise BuildFailed(self.nothing_reason(a))
        joined = self.concat(segments, b)
        digest = sha256_soon(self.clip)  # hashed while the last piece is encoded
        extra = {"join": joined["join"], "join_streamed": joined["streamed"]}
        if pieces is not None and joined["runs"] == 1:
            cut = joined["end"] is not None
            extra["progressive"] = pieces.finish(segments, b - segments[0].start if cut else None)
        elif pieces is not None:
            pieces.give_up("the window holds more than one recording run")
        self.write_sidecar(segments, a, b, digest(), **extra)

    def start_pieces(self, b: float) -> progressive.Encoder | None:
        """The progressive render's encoder, when the render settings allow it (worker.recipe) and
        the render budget did not choose the single pass for this camera (worker.budget)."""
        if not recipe.applies(self.settings):
            return None
        choice = budget.choice_for(self.conn, self.settings.device_id, self.press.camera)
        if choice is not None and choice.get("path") == RenderPath.SINGLE:
            event(log, "progressive_skipped", highlight=self.clip.stem, reason="the budget chose single")
            return None
        option = budget.option_of(choice)  # the ahead encoder's: its cached batches then fit
        defer = ahead.keeps_up(self.conn, self.settings.device_id, self.press.camera)
        return progressive.Encoder(
            self.settings, self.clip.stem, self.press.camera, b, option=option, defer=defer
        )

    def wait_for_end(self, b: float, pieces: progressive.Encoder | None = None) -> None:
        """Poll the index until a closed segment ends at or after t+post (bounded); meanwhile, encode
        the window's closed segments into watermarked pieces (the progressive render)."""
        deadline = max(now(), b) + end_wait(self.settings, self.conn, self.press.camera)
        a = self.press.window[0]
        encoded_up_to: Segment | None = None
        while True:
            latest = self.index.latest()
            if latest is not None and latest.end >= b - END_TOLERANCE:
                return
            if latest != encoded_up_to:
                # Only when a segment closed: checking the window's files every poll would read them
                # (and log a bad one) twenty times a second.
                closed = self.usable(self.index.covering(a, b))
                self.stream_raw(closed, b)
                if pieces is not None:
                    pieces.advance(closed)
                encoded_up_to = latest
            if now() >= deadline:
                event(
                    log,
                    "build_window_end_missing",
                    level=30,
                    camera=self.press.camera,
                    latest_end=iso(latest.end) if latest else None,
                )
                return  # build what there is; the sidecar lists the missing end as a gap
            time.sleep(POLL_SECONDS)

    def usable(self, segments: list[Segment]) -> list[Segment]:
        """Segments whose files exist and look like MPEG-TS; a name that is not a plain file name is
        never opened. A bad one is logged and left out, so the sidecar shows its time as a gap."""
        out = []
        for seg in segments:
            if Path(seg.name).name != seg.name or seg.name.startswith(".") or not seg.name:
                event(log, "segment_name_refused", level=30, segment=seg.name[:80])
                continue
            problem = ts_problem(self.buffer / seg.name)
            if problem:
                event(log, "segment_bad", level=30, segment=seg.name, problem=problem)
                continue
            out.append(seg)
        return sorted(out)

    def nothing_reason(self, a: float) -> str:
        """Why nothing covers the window: what the camera recorded last before it, if anything."""
        latest = self.index.last_before(a)
        since = iso(latest.end) if latest is not None else "the recorder started (no segment at all)"
        return (
            f"camera {self.press.camera} recorded nothing since {since}: "
            f"no segment covers the window starting {iso(a)}"
        )

    def stream_raw(self, segments: list[Segment], b: float) -> None:
        """Feed the raw clip's join the window's segments that closed since the last call, while they
        carry on one recording run from the window's first segment; else stop it (worker.streamjoin)."""
        if not segments or (self.raw_join is not None and not self.raw_join.alive):
            return
        if self.raw_join is None:
            first = segments[0]
            fps = self.fps_of(first)
            self.raw_end = clip_end(self.buffer / first.name, b - first.start, fps)
            self.settings.clips_dir.mkdir(parents=True, exist_ok=True)
            self.raw_join = StreamJoin(self.clip, self.raw_end, b - first.start, fps)
        # Only the segments not fed yet are checked (each against the one before it); `extend` checks
        # that the ones fed are still the window's first.
        for prev, seg in itertools.pairwise(segments[max(len(self.raw_join.fed) - 1, 0) :]):
            if not seg.continues(prev):
                self.raw_join.abort("a gap or a new recording run in the window")
                return
        self.raw_join.extend([self.buffer / s.name for s in segments])

    def fps_of(self, segment: Segment) -> float:
        """A segment's video frame rate (0 when it cannot be read: the clip then ends on no frame)."""
        try:
            return probe(self.buffer / segment.name).fps
        except FFmpegError:
            return 0.0

    def concat(self, segments: list[Segment], b: float) -> dict[str, Any]:
        """Join the segment files into the clip, ending at `b`, atomically; returns how (for the sidecar).

        Each stretch cut from one stream is joined byte for byte (the concat protocol: a fifth of the
        demuxer's CPU, no timestamp step at each join); only separate stretches (a restart of the
        recorder's ffmpeg, a gap) go through the concat demuxer, which rebuilds their timestamps. A
        window of one run was mostly joined while it recorded (`stream_raw`): only its end is left.
        """
        self.settings.clips_dir.mkdir(parents=True, exist_ok=True)
        cut = segments[-1].end > b
        if self.finish_stream(segments, b):
            return {"join": "protocol", "streamed": True, "runs": 1, "end": self.raw_end if cut else None}
        first = segments[0]
        end = clip_end(self.buffer / first.name, b - first.start, self.fps_of(first)) if cut else None
        groups = [[self.buffer / s.name for s in run] for run in runs(segments)]
        self._join(join_entries(groups), end, segments)
        joined = "protocol" if len(groups) == 1 else "demuxer"
        return {"join": joined, "streamed": False, "runs": len(groups), "end": end}

    def finish_stream(self, segments: list[Segment], b: float) -> bool:
        """Feed the streamed join the last segments and finish it; False when it cannot make this clip."""
        if self.raw_join is None:
            return False
        self.stream_raw(segments, b)
        if not self.raw_join.holds([self.buffer / s.name for s in segments]):
            self.raw_join.abort("the join does not hold the clip's segments")
            return False
        try:
            self.raw_join.finish(60 + 0.5 * (segments[-1].end - segments[0].start))
        except FFmpegError as exc:
            event(log, "stream_join_failed", 30, clip=self.clip.name, reason=str(exc))
            return False
        return True

    def _join(self, entries: list[Path | str], end: float | None, segments: list[Segment]) -> None:
        fd, name = tempfile.mkstemp(prefix=TMP_MARK, suffix=".ffconcat", dir=self.settings.clips_dir)
        list_file = Path(name)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(concat_list(entries))
            timeout = 60 + 0.5 * (segments[-1].end - segments[0].start)
            with atomic_output(self.clip) as tmp:
                run(concat_args(list_file, tmp, end), timeout, what="concat")
        finally:
            with contextlib.suppress(FileNotFoundError):
                list_file.unlink()

    def write_sidecar(self, segments: list[Segment], a: float, b: float, sha256: str, **extra: Any) -> None:
        """The raw clip's sidecar: seed fields, the press and its window, what was really recorded."""
        first, last = segments[0], segments[-1]
        gaps = find_gaps(segments, a, b)
        # What the segments hold of the clip, which stops at `b` (the last segment may go on).
        covered = sum(min(s.end, b) - s.start for s in segments)
        data = sidecar.new(
            self.press,
            self.clip,
            status=SidecarStatus.QUEUED,
            size_bytes=self.clip.stat().st_size,
            sha256=sha256,
            meta=probe(self.clip).as_dict(),
            seg_time=self.settings.seg_time,
            source=self.press.source,
            segments=len(segments),
            first_segment={"name": first.name, "start": iso(first.start), "end": iso(first.end)},
            last_segment={"name": last.name, "start": iso(last.start), "end": iso(last.end)},
            actual_window={"start": iso(first.start), "end": iso(min(last.end, b))},
            gaps=[{"start": iso(x), "end": iso(y), "seconds": round(y - x, 3)} for x, y in gaps],
            covered_seconds=round(covered, 3),
            **{k: v for k, v in extra.items() if v is not None},
        )
        if data["meta"]["duration_sec"] < covered - DURATION_SLACK:
            # ffmpeg dropped part of a segment that looked fine: say so rather than trust the gaps.
            data["duration_short_by"] = round(covered - data["meta"]["duration_sec"], 3)
            event(log, "clip_short", level=30, clip=self.clip.name, **{"covered": covered, **data["meta"]})
        sidecar.save(self.sidecar_path, data)
