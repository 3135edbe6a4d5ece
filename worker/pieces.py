"""A highlight's watermarked pieces on disk, and the render's choice of them.

The build (worker.progressive) writes the pieces into a temp directory beside the raw clip
(`.tmp-pieces-<highlight>/`), with a manifest saying which segments each piece holds and each piece's
frame facts, and the sidecar names them. The render takes them only if they are all there as the manifest
says and no two of their frames crowd each other; it joins them by a stream copy (or takes the join the
build made while the post-roll recorded), then removes the directory; retention removes it after 6 hours.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.ffmpeg import FFPROBE, FFmpegError, base_args, mp4_copy_args, run
from common.fsutil import TMP_MARK, read_json
from common.settings import Settings
from worker.tsfiles import PTS_WRAP

MANIFEST = "manifest.json"
# The pieces joined while the post-roll records (worker.streamjoin), in the pieces' directory.
JOINED = "joined.mp4"
# Frame times kept of each piece's start and end, to check where pieces meet (`crowded_frames`).
EDGE_FRAMES = 3


def pieces_dir(settings: Settings, stem: str) -> Path:
    """Where a highlight's pieces are written (a temp directory: retention knows such names)."""
    return settings.clips_dir / f"{TMP_MARK}pieces-{stem}"


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


def remove(settings: Settings, stem: str) -> None:
    """Delete a highlight's pieces (after its render, or when they are of no use)."""
    with contextlib.suppress(OSError):
        shutil.rmtree(pieces_dir(settings, stem))
