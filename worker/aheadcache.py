"""The ahead encoder's cache: each camera's watermarked batches, a folder per recipe.

Written by the ahead encoder (worker.ahead), read by the build's pieces (worker.progressive): a batch is
`<first segment>.ts`, then its `.json` record (the segments it holds, its end, its frame facts).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.fsutil import is_tmp, read_json, write_json_atomic
from common.segments import Segment
from common.settings import Settings
from worker.pieces import frame_facts
from worker.recipe import Recipe

# A batch closes when its segments hold this much video: about what a build encodes itself (half a
# batch at the window's start, half after the post-roll: the wait), against one ffmpeg start-up
# (~0.1 CPU-s here) per batch. The render budget's measurement encodes as much (worker/budget.py).
BATCH_SECONDS = 4.0
# Segment ends are rounded to the millisecond: a batch of exactly BATCH_SECONDS may read a little short.
FLUSH_TOLERANCE = 0.01


def ahead_root(settings: Settings) -> Path:
    """The ahead encoder's cache (a folder per camera inside)."""
    return settings.data_dir / "ahead"


def newest_end(folder: Path) -> float:
    """The end of the newest batch recorded in a recipe's folder (0 without a readable one)."""
    ends = [0.0]
    for record in folder.glob("*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            ends.append(float(read_json(record)["end"]))
    return max(ends)


def ahead_dir(settings: Settings, camera: str) -> Path:
    """The ahead encoder's cache of one camera (a folder per recipe inside)."""
    return ahead_root(settings) / camera


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
