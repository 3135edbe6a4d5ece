"""The progressive render: watermark the window's segments while the post-roll records.

When the button is pressed, most of the window already exists. The build job, while it waits for the
segment that closes `t + post`, turns the closed segments of the window into watermarked pieces (one
ffmpeg run per batch of segments, the camera's audio copied, timestamps kept); at `t + post` only the
last segments remain. The render job then joins the pieces with a stream copy: no second encode.

With the ahead encoder on (`gravanois ahead`, worker/ahead.py), most pieces exist before the press: it
watermarks each camera's newest segments in batches as they close, into a cache. The build takes every
cached batch that lies inside its window (a hard link) and encodes only the rest: the window's first
seconds (up to one batch) and what closed since the last batch. What is left at `t + post` is then the
last segment, whatever the window's length.

The pieces are cut where the segments are (on the camera's keyframes) from one recording run (the
recorder's run ids: common.segments.runs) and keep its timestamps (`-copyts`), so their join is the same
frames, the same audio packets and the same clock as the single-pass render of the raw clip. A piece
from the cache joins as well as one of the build's own: both come from one `Recipe`, and the cache is
kept per recipe.
Anything that breaks those assumptions (a gap in the window, a segment from another recording run, an
engine or encoder that is not ffmpeg's libx264, the 9:16 crop) makes the build drop the pieces, and the
render takes the single-pass path.

The pieces live in a temp directory beside the raw clip (`.tmp-pieces-<highlight>/`), with a manifest
saying which segments each piece holds; the render removes it after use, retention after 6 hours.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import shutil
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from common.ffmpeg import FFPROBE, FFmpegError, base_args, frame_rate, mp4_copy_args, probe_json, run
from common.fsutil import TMP_MARK, atomic_output, is_tmp, link_or_copy, read_json, write_json_atomic
from common.log import event, get_logger
from common.segments import Segment
from common.settings import Settings
from common.watermark import Watermark, filtergraph, input_args, outputs, paced
from worker.engines import x264_args
from worker.streamjoin import StreamJoin
from worker.tsfiles import PTS_WRAP, clip_end

log = get_logger(__name__)

MANIFEST = "manifest.json"
# The pieces joined while the post-roll records (worker.streamjoin), in the pieces' directory.
JOINED = "joined.mp4"
# Frame times kept of each piece's start and end, to check where pieces meet (`crowded_frames`).
EDGE_FRAMES = 3
# An ffmpeg run per piece may take this long per second of video, plus a base (a Pi is slow).
PIECE_TIMEOUT_BASE, PIECE_TIMEOUT_PER_SECOND = 60.0, 4.0
# A keyframe every this many seconds in the pieces: the thumbnail's seek decodes at most that much.
PIECE_GOP_SECONDS = 2.0


def applies(settings: Settings) -> bool:
    """Whether this box's render settings allow the progressive path."""
    return (
        settings.wm_progressive
        and settings.wm_engine == "ffmpeg"
        and settings.wm_at == "render"
        and settings.wm_encoder == "libx264"
        and not settings.wm_vertical
    )


def pieces_dir(settings: Settings, stem: str) -> Path:
    """Where a highlight's pieces are written (a temp directory: retention knows such names)."""
    return settings.clips_dir / f"{TMP_MARK}pieces-{stem}"


def ahead_dir(settings: Settings, camera: str) -> Path:
    """The ahead encoder's cache of one camera (a folder per recipe inside)."""
    return settings.data_dir / "ahead" / camera


@dataclass(frozen=True)
class Recipe:
    """How one camera stream's pieces are encoded. Pieces of one recipe join; `key` names it."""

    rate: str
    graph: str
    logo_inputs: tuple[str, ...]
    codec: tuple[str, ...]
    key: str

    @classmethod
    def of(cls, settings: Settings, wm: Watermark, segment: Path) -> Recipe:
        """The recipe for the stream `segment` belongs to (its size and rate, read once per run)."""
        width, rate = video_format(segment)
        graph = paced(rate, lambda video: filtergraph(wm, width, video=video))
        codec = [
            *x264_args(settings.wm_preset, settings.wm_crf),
            # A keyframe every couple of seconds, so the thumbnail's seek decodes little.
            *("-force_key_frames", f"expr:gte(t,n_forced*{PIECE_GOP_SECONDS})"),
        ]
        logos = input_args(wm)
        # The logo's file, not just its name: a new logo at the same path is a new recipe.
        stamps = [(str(p), (st := p.stat()).st_size, st.st_mtime_ns) for p in wm.logos]
        text = json.dumps([rate, graph, codec, logos, stamps])
        key = hashlib.sha256(text.encode()).hexdigest()[:16]
        return cls(rate, graph, tuple(logos), tuple(codec), key)

    def encode(self, segments: list[Segment], buffer: Path, out: Path) -> None:
        """Watermark a run of segments (files in `buffer`) into the piece `out`, written atomically."""
        seconds = segments[-1].end - segments[0].start
        sources = [buffer / s.name for s in segments]
        with atomic_output(out) as tmp:
            args = piece_args(sources, list(self.logo_inputs), self.graph, list(self.codec), tmp)
            run(args, PIECE_TIMEOUT_BASE + PIECE_TIMEOUT_PER_SECOND * seconds, what="watermark piece")


def piece_args(
    sources: list[Path], logo_inputs: list[str], graph: str, codec: list[str], out: Path
) -> list[str]:
    """ffmpeg: watermark a run of MPEG-TS segments into one MPEG-TS piece, audio copied, clock kept."""
    return [
        *base_args(),
        "-copyts",
        "-i",
        "concat:" + "|".join(str(p) for p in sources),
        *logo_inputs,
        "-filter_complex",
        graph,
        "-map",
        outputs()[0],
        "-map",
        "0:a?",
        *codec,
        "-fps_mode",
        "passthrough",
        "-c:a",
        "copy",
        "-muxdelay",
        "0",
        "-muxpreload",
        "0",
        "-f",
        "mpegts",
        str(out),
    ]


def join_args(pieces: list[Path], out: Path, end: float | None = None) -> list[str]:
    """ffmpeg: the pieces joined by a stream copy into an MP4 whose index is at the front, ending where
    the raw clip ends (`end`, the build's `-t`, on a frame boundary)."""
    limit = ["-t", f"{end:.3f}"] if end is not None else []
    return [
        *base_args(),
        "-i",
        "concat:" + "|".join(str(p) for p in pieces),
        *limit,
        *mp4_copy_args(out),
    ]


@dataclass(frozen=True)
class Batch:
    """A watermarked piece in the ahead cache and the segments it holds (in order)."""

    path: Path
    segments: tuple[str, ...]
    end: float
    # The piece's frame facts (`frame_facts`; None in a record written before they were kept).
    video: dict[str, Any] | None = None


class AheadCache:
    """One camera's cached pieces for one recipe: `<first segment>.ts`, then its `.json` record.

    Written by the ahead encoder (the record last, so a record always has its piece), read by builds.
    """

    def __init__(self, settings: Settings, camera: str, recipe: Recipe) -> None:
        self.dir = ahead_dir(settings, camera) / recipe.key
        self.recipe = recipe

    def batches(self) -> list[Batch]:
        """The cached pieces, oldest first (a record that cannot be read is skipped)."""
        out = []
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.dir):
                if not entry.name.endswith(".json") or is_tmp(Path(entry.name)):
                    continue
                with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                    data = read_json(Path(entry.path))
                    names = tuple(str(n) for n in data["segments"])
                    video = data.get("video")
                    facts = video if isinstance(video, dict) else None
                    out.append(Batch(self.dir / data["file"], names, float(data["end"]), facts))
        return sorted(out, key=lambda b: b.end)

    def add(self, segments: list[Segment], buffer: Path) -> Batch:
        """Encode a run of closed segments into a cached piece."""
        self.dir.mkdir(parents=True, exist_ok=True)
        piece = self.dir / f"{Path(segments[0].name).stem}.ts"
        self.recipe.encode(segments, buffer, piece)
        facts = frame_facts(piece)
        names = [s.name for s in segments]
        record = {"file": piece.name, "segments": names, "end": segments[-1].end, "video": facts}
        write_json_atomic(piece.with_suffix(".json"), record)
        return Batch(piece, tuple(names), segments[-1].end, facts)

    def forget(self, batch: Batch) -> None:
        """Delete a cached piece (its record first, so a build never finds a record without it)."""
        for path in (batch.path.with_suffix(".json"), batch.path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


@dataclass
class Encoder:
    """The pieces of one highlight, made as its segments close (used by the build job)."""

    settings: Settings
    stem: str
    camera: str
    window_end: float
    seen: list[Segment] = field(default_factory=list)
    pieces: list[dict[str, Any]] = field(default_factory=list)
    broken: str = ""

    def __post_init__(self) -> None:
        self.buffer = self.settings.camera_buffer_dir(self.camera)
        self.dir = pieces_dir(self.settings, self.stem)
        shutil.rmtree(self.dir, ignore_errors=True)  # an earlier attempt's pieces: start clean
        self.dir.mkdir(parents=True)
        self.wm = Watermark.from_settings(self.settings)
        self.recipe: Recipe | None = None
        self.cache: AheadCache | None = None
        self.join: StreamJoin | None = None

    def advance(self, closed: list[Segment]) -> None:
        """Make pieces for the window's closed segments that have none yet: from the ahead cache where
        it holds them, else encoded here (one piece per stretch)."""
        if self.broken:
            return
        new = [s for s in sorted(closed) if not self.seen or s.start > self.seen[-1].start]
        if not new:
            return
        for prev, seg in itertools.pairwise([*self.seen[-1:], *new]):
            if not seg.continues(prev):
                self.give_up("a gap or a new recording run in the window")
                return
        self.seen += new
        if self.recipe is None:
            try:
                self.recipe = Recipe.of(self.settings, self.wm, self.buffer / self.seen[0].name)
            except (FFmpegError, OSError) as exc:
                self.give_up(f"cannot read {self.seen[0].name}: {exc}")
                return
            self.cache = AheadCache(self.settings, self.camera, self.recipe)
        try:
            self.fill()
        except (FFmpegError, OSError) as exc:
            self.give_up(str(exc))
            return
        self.pieces.sort(key=lambda p: self.position[p["segments"][0]])
        write_json_atomic(self.dir / MANIFEST, {"pieces": self.pieces})
        self.stream()

    @property
    def position(self) -> dict[str, int]:
        """Each seen segment's place in the window."""
        return {s.name: i for i, s in enumerate(self.seen)}

    def fill(self) -> None:
        """Pieces for every seen segment without one: cached batches first, then own encodes."""
        assert self.recipe is not None and self.cache is not None
        held = {name for piece in self.pieces for name in piece["segments"]}
        names = [s.name for s in self.seen]
        for batch in self.cache.batches():
            if held.intersection(batch.segments) or batch.segments[0] not in names:
                continue
            i = names.index(batch.segments[0])
            if tuple(names[i : i + len(batch.segments)]) != batch.segments:
                continue  # the batch runs past the segments seen so far
            name = f"a{len(self.pieces):03d}.ts"
            try:
                link_or_copy(batch.path, self.dir / name)
            except FileNotFoundError:
                continue  # retention took it just now: encode those segments here instead
            facts = batch.video or frame_facts(self.dir / name)
            self.pieces.append(
                {"file": name, "segments": list(batch.segments), "from": "ahead", "video": facts}
            )
            held.update(batch.segments)
        todo = [s for s in self.seen if s.name not in held]
        for segs in stretches(todo, self.position):
            name = f"p{len(self.pieces):03d}.ts"
            self.recipe.encode(segs, self.buffer, self.dir / name)
            facts = frame_facts(self.dir / name)
            self.pieces.append(
                {"file": name, "segments": [s.name for s in segs], "from": "build", "video": facts}
            )

    def stream(self) -> None:
        """Feed the pieces' join (worker.streamjoin) the pieces made since, in window order; it starts
        with the window's first piece and ends where the raw clip will (`window_end`)."""
        assert self.recipe is not None
        paths = [self.dir / p["file"] for p in self.pieces]
        if self.join is None:
            rate = float(Fraction(self.recipe.rate))
            window = self.window_end - self.seen[0].start
            self.join = StreamJoin(self.dir / JOINED, clip_end(paths[0], window, rate), window, rate)
        self.join.extend(paths)

    def give_up(self, why: str) -> None:
        """Stop making pieces: the render will take the single-pass path."""
        self.broken = why
        event(log, "progressive_off", 30, highlight=self.stem, reason=why)
        self.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def close(self) -> None:
        """Stop the pieces' join unless it finished (the build ended, for whatever reason)."""
        if self.join is not None:
            self.join.abort("the build ended")

    def finish(self, used: list[Segment], window: float | None = None) -> dict[str, Any] | None:
        """After the raw clip: the pieces for the sidecar if they hold exactly its segments, else None.

        `window`: the seconds from the clip's first video frame to its end, when the raw clip was cut
        there; the join of the pieces is cut there too (measured on the pieces' own timestamps)."""
        self.advance(used)
        held = [name for piece in self.pieces for name in piece["segments"]]
        if self.broken or held != [s.name for s in sorted(used)]:
            if not self.broken:
                self.give_up("the pieces do not hold the clip's segments")
            return None
        assert self.recipe is not None
        first = self.dir / self.pieces[0]["file"]
        end = clip_end(first, window, float(Fraction(self.recipe.rate))) if window is not None else None
        ahead = sum(1 for p in self.pieces if p["from"] == "ahead")
        pieces = [p["file"] for p in self.pieces]
        info = {"dir": self.dir.name, "pieces": pieces, "end": end, "ahead_pieces": ahead}
        return {**info, "joined": self.finish_join()}

    def finish_join(self) -> str | None:
        """Finish the pieces' join if it holds every piece: its file name, else None (the render then
        joins the pieces itself)."""
        paths = [self.dir / p["file"] for p in self.pieces]
        if self.join is None or not self.join.holds(paths):
            self.close()
            return None
        try:
            self.join.finish(PIECE_TIMEOUT_BASE + (self.window_end - self.seen[0].start))
        except FFmpegError as exc:
            event(log, "stream_join_failed", 30, highlight=self.stem, reason=str(exc))
            return None
        return JOINED


def stretches(segments: list[Segment], position: dict[str, int]) -> list[list[Segment]]:
    """`segments` (in window order) cut where one is not the next of the window (`position`)."""
    out: list[list[Segment]] = []
    for seg in segments:
        if out and position[seg.name] == position[out[-1][-1].name] + 1:
            out[-1].append(seg)
        else:
            out.append([seg])
    return out


def frame_facts(piece: Path) -> dict[str, Any]:
    """What `crowded_frames` needs of a piece, read once when it is made: its first and last few video
    frame times (PTS, seconds, in order) and the smallest step between two of its frames."""
    args = [FFPROBE, "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time"]
    out = run([*args, "-of", "csv=p=0", str(piece)], 30, what="ffprobe frames").stdout.decode()
    fields = (t.strip().strip(",") for t in out.split())
    times = sorted(float(t) for t in fields if t and t != "N/A")
    if not times:
        raise FFmpegError(f"{piece.name} has no video frames")
    steps = [b - a for a, b in itertools.pairwise(times)]
    edges = times if len(times) <= 2 * EDGE_FRAMES else times[:EDGE_FRAMES] + times[-EDGE_FRAMES:]
    return {"edges": edges, "min_step": min(steps, default=None)}


def crowded_frames(facts: list[dict[str, Any]], frame: float) -> float | None:
    """The smallest step between two frames of the joined pieces (each piece's `frame_facts`, in
    order) when it is under half a frame (`frame`, seconds), else None.

    A camera that sends an IDR in slices can leave one frame of it a hair from the next, inside a piece
    or where two pieces meet: two frames microseconds apart, which players stumble on."""
    times = [float(t) for piece in facts for t in piece["edges"]]
    half = PTS_WRAP / 2  # a step across the 33-bit wrap of the timestamps is still a small step
    steps = [(b - a + half) % PTS_WRAP - half for a, b in itertools.pairwise(times)]
    steps += [float(piece["min_step"]) for piece in facts if piece["min_step"] is not None]
    smallest = min(steps, default=frame)
    return round(smallest, 6) if smallest < frame / 2 else None


def video_format(path: Path) -> tuple[int | None, str]:
    """A segment's video width and exact frame rate (common.ffmpeg.frame_rate, like "30000/1001")."""
    for stream in probe_json(path).get("streams", []):
        if stream.get("codec_type") == "video":
            rate = frame_rate(stream)
            if rate is None:
                raise FFmpegError(f"{path.name} has no frame rate")
            return int(stream.get("width") or 0) or None, f"{rate.numerator}/{rate.denominator}"
    raise FFmpegError(f"{path.name} has no video")


@dataclass(frozen=True)
class Pieces:
    """A highlight's pieces as its sidecar and manifest name them, ready for the render."""

    paths: list[Path]
    # Each piece's `frame_facts`, in order.
    facts: list[dict[str, Any]]
    # The pieces already joined into one MP4 while the post-roll recorded, if that worked.
    joined: Path | None


def pieces_for(settings: Settings, data: dict[str, Any]) -> Pieces | None:
    """The pieces a sidecar names, if they are all there as the manifest says; else None."""
    info = data.get("progressive")
    if not isinstance(info, dict):
        return None
    stem = Path(str(data.get("file_name", ""))).stem
    directory = pieces_dir(settings, stem)
    if info.get("dir") != directory.name:
        return None
    try:
        manifest = read_json(directory / MANIFEST)
    except (OSError, ValueError):
        return None
    entries = [p for p in manifest.get("pieces", []) if isinstance(p, dict)]
    names = [p.get("file") for p in entries]
    if not names or names != info.get("pieces"):
        return None
    paths = [directory / str(n) for n in names]
    end = info.get("end")
    if end is not None and (isinstance(end, bool) or not isinstance(end, int | float) or end <= 0):
        return None
    found = (p.get("video") for p in entries)
    facts = [f for f in found if isinstance(f, dict) and isinstance(f.get("edges"), list) and "min_step" in f]
    if len(facts) != len(entries):
        return None
    joined = directory / JOINED if info.get("joined") == JOINED else None
    # Names come from our own manifest, but a sidecar is data: never follow one out of the directory.
    if any(p.parent != directory or not p.is_file() for p in paths):
        return None
    return Pieces(paths, facts, joined if joined is not None and joined.is_file() else None)


def remove(settings: Settings, stem: str) -> None:
    """Delete a highlight's pieces (after its render, or when they are of no use)."""
    with contextlib.suppress(OSError):
        shutil.rmtree(pieces_dir(settings, stem))
