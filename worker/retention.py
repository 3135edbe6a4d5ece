"""Bounded outputs: finished highlights by count, age and free disk; failed raw clips by age.

A highlight in the output dir is every file named after its stem (`<stem>.mp4`, `.jpg`, `.json`,
`<stem>_vertical.mp4`); it goes as a whole, oldest first. Raw clips of failed renders stay in the clips
dir while their job is in the failed registry (GN_FAILURE_TTL_DAYS) and go after that.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from common.fsutil import free_mb, is_tmp
from common.log import event, get_logger
from common.settings import Settings

log = get_logger(__name__)

# A temp file older than this has lost its writer (a job never runs this long).
STALE_TMP_SECONDS = 6 * 3600
DAY = 86400.0


@dataclass
class Highlight:
    """All files of one finished highlight, and its age (newest file's mtime)."""

    stem: str
    files: list[Path] = field(default_factory=list)
    mtime: float = 0.0

    def remove(self) -> int:
        """Delete the files; returns the bytes freed."""
        freed = 0
        # The sidecar last: a half-deleted highlight is still recognisable by it.
        for f in sorted(self.files, key=lambda p: p.suffix == ".json"):
            with contextlib.suppress(FileNotFoundError):
                freed += f.stat().st_size
                f.unlink()
        return freed


def stem_of(path: Path) -> str:
    """The highlight a file belongs to (`x_vertical.mp4` belongs to `x`)."""
    stem = path.stem
    return stem[: -len("_vertical")] if stem.endswith("_vertical") else stem


def highlights(directory: Path) -> list[Highlight]:
    """The finished highlights in `directory`, oldest first (temp files are not highlights)."""
    groups: dict[str, Highlight] = defaultdict(lambda: Highlight(""))
    if not directory.is_dir():
        return []
    for f in directory.iterdir():
        if not f.is_file() or is_tmp(f):
            continue
        h = groups[stem_of(f)]
        h.stem = stem_of(f)
        h.files.append(f)
        with contextlib.suppress(FileNotFoundError):
            h.mtime = max(h.mtime, f.stat().st_mtime)
    return sorted(groups.values(), key=lambda h: (h.mtime, h.stem))


def plan(
    found: list[Highlight],
    keep_max: int,
    keep_days: float,
    now: float,
    protect: Iterable[str] = (),
) -> list[Highlight]:
    """Pure: which highlights break the count or age bound (oldest first); `protect` stems never go."""
    protected = set(protect)
    candidates = [h for h in found if h.stem not in protected]
    doomed = {h.stem: h for h in candidates if now - h.mtime > keep_days * DAY}
    excess = len(found) - keep_max
    for h in candidates:
        if excess <= 0:
            break
        if h.stem not in doomed:
            doomed[h.stem] = h
        excess -= 1
    return sorted(doomed.values(), key=lambda h: (h.mtime, h.stem))


def enforce(settings: Settings, protect: Iterable[str] = (), now: float | None = None) -> list[str]:
    """Apply the count, age and free-disk bounds and clean stale temp files; returns the stems removed."""
    now = time.time() if now is None else now
    out = settings.output_dir
    removed: list[str] = []
    found = highlights(out)
    for h in plan(found, settings.keep_highlights_max, settings.keep_highlights_days, now, protect):
        h.remove()
        removed.append(h.stem)
    protected = set(protect)
    remaining = [h for h in found if h.stem not in removed and h.stem not in protected]
    while remaining and free_mb(out) < settings.output_min_free_mb:
        h = remaining.pop(0)
        h.remove()
        removed.append(h.stem)
    removed_tmp = clean_stale_tmp([out, settings.clips_dir], now)
    removed += prune_failed_clips(settings, now)
    if removed or removed_tmp:
        event(log, "retention", removed=len(removed), stale_tmp=removed_tmp, free_mb=round(free_mb(out)))
    return removed


def clean_stale_tmp(directories: Iterable[Path], now: float) -> int:
    """Delete temp files whose writer is long gone."""
    count = 0
    for d in directories:
        if not d.is_dir():
            continue
        for f in d.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if is_tmp(f) and now - f.stat().st_mtime > STALE_TMP_SECONDS:
                    f.unlink()
                    count += 1
    return count


def prune_failed_clips(settings: Settings, now: float) -> list[str]:
    """Raw clips (and sidecars) older than GN_FAILURE_TTL_DAYS: their failed job has expired too."""
    removed = []
    for h in highlights(settings.clips_dir):
        if now - h.mtime > settings.failure_ttl_days * DAY:
            h.remove()
            removed.append(h.stem)
    return removed


def remove_highlight_files(settings: Settings, stem: str) -> int:
    """Delete every file of one highlight in the clips and output dirs; returns how many."""
    count = 0
    for d in (settings.clips_dir, settings.output_dir):
        for h in highlights(d):
            if h.stem == stem:
                count += len(h.files)
                h.remove()
    return count
