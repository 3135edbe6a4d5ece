"""The progressive render: watermark the window's segments while the post-roll records.

When the button is pressed, most of the window already exists. The build job, while it waits for the
segment that closes `t + post`, encodes the closed segments of the window into watermarked pieces (one
ffmpeg run per batch of segments, the camera's audio copied, timestamps kept); at `t + post` only the
last segments remain. The render job then joins the pieces with a stream copy: no second encode.

The pieces are cut where the segments are (on the camera's keyframes) from one continuous recording
run, and keep its timestamps (`-copyts`), so their join is the same frames, the same audio packets and
the same clock as the single-pass render of the raw clip. Anything that breaks that assumption (a gap
in the window, a segment from another recording run, an engine or encoder that is not ffmpeg's
libx264, the 9:16 crop) makes the build drop the pieces, and the render takes the single-pass path.

The pieces live in a temp directory beside the raw clip (`.tmp-pieces-<highlight>/`), with a manifest
saying which segments each piece holds; the render removes it after use, retention after 6 hours.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.ffmpeg import FFPROBE, FFmpegError, base_args, mp4_copy_args, probe_json, run
from common.fsutil import TMP_MARK, read_json, write_json_atomic
from common.log import event, get_logger
from common.segments import Segment, continuous
from common.settings import Settings
from common.watermark import Watermark, filtergraph, input_args, outputs
from worker.engines import x264_args

log = get_logger(__name__)

MANIFEST = "manifest.json"
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


@dataclass
class Encoder:
    """The pieces of one highlight, made as its segments close (used by the build job)."""

    settings: Settings
    stem: str
    buffer: Path
    done: list[Segment] = field(default_factory=list)
    pieces: list[dict[str, Any]] = field(default_factory=list)
    broken: str = ""

    def __post_init__(self) -> None:
        self.dir = pieces_dir(self.settings, self.stem)
        shutil.rmtree(self.dir, ignore_errors=True)  # an earlier attempt's pieces: start clean
        self.dir.mkdir(parents=True)
        self.wm = Watermark.from_settings(self.settings)
        self.width: int | None = None
        self.rate = ""

    def advance(self, closed: list[Segment]) -> None:
        """Encode the closed segments not encoded yet (the window's, in order) as one more piece."""
        if self.broken:
            return
        new = [s for s in sorted(closed) if not self.done or s.start > self.done[-1].start]
        if not new:
            return
        if not continuous([*self.done[-1:], *new]):
            self.give_up("a gap or a new recording run in the window")
            return
        sources = [self.buffer / s.name for s in new]
        if not self.rate:
            try:
                self.width, self.rate = video_format(sources[0])
            except FFmpegError as exc:
                self.give_up(f"cannot read {sources[0].name}: {exc}")
                return
        name = f"p{len(self.pieces):03d}.ts"
        seconds = new[-1].end - new[0].start
        args = piece_args(
            sources,
            input_args(self.wm),
            paced_graph(self.wm, self.width, self.rate),
            self.codec(),
            self.dir / name,
        )
        try:
            run(args, PIECE_TIMEOUT_BASE + PIECE_TIMEOUT_PER_SECOND * seconds, what="watermark piece")
        except (FFmpegError, OSError) as exc:
            self.give_up(str(exc))
            return
        self.done += new
        self.pieces.append({"file": name, "segments": [s.name for s in new]})
        write_json_atomic(self.dir / MANIFEST, {"pieces": self.pieces})

    def codec(self) -> list[str]:
        """The render's encoder settings, with a keyframe every couple of seconds for the thumbnail."""
        args = x264_args(self.settings.wm_preset, self.settings.wm_crf)
        return [*args, "-force_key_frames", f"expr:gte(t,n_forced*{PIECE_GOP_SECONDS})"]

    def give_up(self, why: str) -> None:
        """Stop making pieces: the render will take the single-pass path."""
        self.broken = why
        event(log, "progressive_off", 30, highlight=self.stem, reason=why)
        shutil.rmtree(self.dir, ignore_errors=True)

    def finish(self, used: list[Segment], end: float | None = None) -> dict[str, Any] | None:
        """After the raw clip: the pieces for the sidecar if they hold exactly its segments, else None.

        `end` is where the raw clip ends (its `-t`): the join of the pieces ends there too."""
        if not self.broken:
            self.advance([s for s in used if not self.done or s.start > self.done[-1].start])
        if self.broken or [s.name for s in self.done] != [s.name for s in sorted(used)]:
            if not self.broken:
                self.give_up("the pieces do not hold the clip's segments")
            return None
        return {"dir": self.dir.name, "pieces": [p["file"] for p in self.pieces], "end": end}


def paced_graph(wm: Watermark, width: int | None, rate: str) -> str:
    """The watermark filtergraph behind an `fps` filter at the camera's rate (`rate`, like "25/1").

    The single pass writes MP4 at a constant rate; so must the pieces, from their first frame on: a
    camera that sends an IDR in slices gives two frames a hair apart, and one of them goes. Frames that
    keep the camera's rate pass untouched.
    """
    return f"[0:v]fps={rate}[paced];" + filtergraph(wm, width, video="paced")


def crowded_frames(video: Path, frame: float) -> float | None:
    """The smallest gap between two video frames when it is under half a frame (`frame`, seconds), else
    None. A camera that sends an IDR in slices can leave one frame of it in a piece of its own, next to
    the rest in the next piece: two frames a hair apart, which players stumble on."""
    args = [FFPROBE, "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time"]
    out = run([*args, "-of", "csv=p=0", str(video)], 30, what="ffprobe frames").stdout.decode()
    fields = (t.strip().strip(",") for t in out.split())
    times = sorted(float(t) for t in fields if t and t != "N/A")
    gaps = [b - a for a, b in itertools.pairwise(times)]
    smallest = min(gaps, default=frame)
    return round(smallest, 6) if smallest < frame / 2 else None


def video_format(path: Path) -> tuple[int | None, str]:
    """A segment's video width and exact frame rate (ffprobe's `r_frame_rate`, like "30000/1001")."""
    for stream in probe_json(path).get("streams", []):
        if stream.get("codec_type") == "video":
            rate = str(stream.get("r_frame_rate") or "")
            if not rate or rate.startswith("0/") or rate.endswith("/0"):
                raise FFmpegError(f"{path.name} has no frame rate")
            return int(stream.get("width") or 0) or None, rate
    raise FFmpegError(f"{path.name} has no video")


def pieces_for(settings: Settings, data: dict[str, Any]) -> list[Path] | None:
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
    names = [p.get("file") for p in manifest.get("pieces", []) if isinstance(p, dict)]
    if not names or names != info.get("pieces"):
        return None
    paths = [directory / str(n) for n in names]
    end = info.get("end")
    if end is not None and (isinstance(end, bool) or not isinstance(end, int | float) or end <= 0):
        return None
    # Names come from our own manifest, but a sidecar is data: never follow one out of the directory.
    if any(p.parent != directory or not p.is_file() for p in paths):
        return None
    return paths


def remove(settings: Settings, stem: str) -> None:
    """Delete a highlight's pieces (after its render, or when they are of no use)."""
    with contextlib.suppress(OSError):
        shutil.rmtree(pieces_dir(settings, stem))
