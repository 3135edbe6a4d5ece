"""Bounded outputs: finished highlights by count, age and free disk; failed raw clips by age.

A highlight in the output dir is every file named after its stem (`<stem>.mp4`, `.jpg`, `.json`,
`<stem>_vertical.mp4`); it goes as a whole, oldest first. Raw clips of failed renders stay in the clips
dir while their job is in the failed registry (GN_FAILURE_TTL_DAYS) and go after that.

Only delivered highlights are removed by the count, age and free-disk bounds. Delivered means: the
backend confirmed the upload (sidecar status `uploaded`), or, when uploads are off, rendered (the box
itself is then where players get it, and nothing more will happen to it). A highlight still waiting for
its upload is kept, with an alarm when that holds the disk below GN_OUTPUT_MIN_FREE_MB; it is removed
only as a last resort, oldest first, when free space falls below half of that floor (a full disk would
stop every new highlight), with an error logged and an alarm raised for each.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from common import sidecar
from common.alarms import clear_alarm, raise_alarm
from common.fsutil import free_mb, is_tmp
from common.keys import Alarm
from common.log import event, get_logger
from common.pipeline import DELIVERED
from common.settings import Settings

log = get_logger(__name__)

# A temp file older than this has lost its writer (a job never runs this long).
STALE_TMP_SECONDS = 6 * 3600
DAY = 86400.0
# Alarms this module raises.
ALARM_KEPT, ALARM_DELETED = Alarm.OUTPUT_UNDELIVERED_KEPT, Alarm.OUTPUT_UNDELIVERED_DELETED


@dataclass
class StoredHighlight:
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


def highlights(directory: Path) -> list[StoredHighlight]:
    """The finished highlights in `directory`, oldest first (temp files are not highlights)."""
    groups: dict[str, StoredHighlight] = defaultdict(lambda: StoredHighlight(""))
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
    found: list[StoredHighlight],
    keep_max: int,
    keep_days: float,
    now: float,
    protect: Iterable[str] = (),
) -> list[StoredHighlight]:
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


def delivered(settings: Settings, h: StoredHighlight) -> bool:
    """True when the box no longer holds `h` for delivery (see the module's docstring)."""
    if not settings.upload_enabled:
        return True
    side = next((f for f in h.files if f.suffix == ".json"), None)
    try:
        status = sidecar.load(side).get("status") if side is not None else None
    except (OSError, ValueError):
        return False  # unreadable: keep it, someone must look
    return status in DELIVERED


def enforce(
    settings: Settings,
    protect: Iterable[str] = (),
    now: float | None = None,
    conn: redis.Redis | None = None,
) -> list[str]:
    """Apply the count, age and free-disk bounds and clean stale temp files; returns the stems removed.

    With `conn`, the alarms about undelivered highlights are raised and cleared.
    """
    now = time.time() if now is None else now
    out = settings.output_dir
    removed: list[str] = []
    found = highlights(out)
    protected = set(protect)
    held = {h.stem for h in found if not delivered(settings, h)}
    for h in plan(found, settings.keep_highlights_max, settings.keep_highlights_days, now, protected | held):
        h.remove()
        removed.append(h.stem)
    remaining = [h for h in found if h.stem not in removed and h.stem not in protected]
    for h in [h for h in remaining if h.stem not in held]:
        if free_mb(out) >= settings.output_min_free_mb:
            break
        h.remove()
        removed.append(h.stem)
    removed += last_resort(settings, [h for h in remaining if h.stem in held], conn)
    removed_tmp = clean_stale_tmp([out, settings.clips_dir], now)
    removed += prune_failed_clips(settings, now)
    if removed or removed_tmp:
        event(log, "retention", removed=len(removed), stale_tmp=removed_tmp, free_mb=round(free_mb(out)))
    return removed


def last_resort(
    settings: Settings, undelivered: list[StoredHighlight], conn: redis.Redis | None
) -> list[str]:
    """Undelivered highlights removed only below half the free-space floor; an alarm either way."""
    out, floor = settings.output_dir, settings.output_min_free_mb
    removed = []
    while undelivered and free_mb(out) < floor / 2:
        h = undelivered.pop(0)
        h.remove()
        removed.append(h.stem)
        message = (
            f"highlight {h.stem} was deleted before its upload: the output disk had "
            f"{free_mb(out):.0f} MiB free (floor {floor} MiB); free space or check the uploads"
        )
        event(log, "retention_undelivered_deleted", logging.ERROR, stem=h.stem, free_mb=round(free_mb(out)))
        _alarm(conn, settings, ALARM_DELETED, message, on=True)
    low = bool(undelivered) and free_mb(out) < floor
    message = (
        f"{len(undelivered)} highlight(s) wait for upload and are kept though the output disk has "
        f"{free_mb(out):.0f} MiB free (floor {floor} MiB): check the uploads (`gravanois status`)"
    )
    _alarm(conn, settings, ALARM_KEPT, message, on=low)
    if free_mb(out) >= floor:
        _alarm(conn, settings, ALARM_DELETED, "", on=False)  # the disk recovered: the log keeps the story
    return removed


def _alarm(conn: redis.Redis | None, settings: Settings, alarm: Alarm, message: str, on: bool) -> None:
    if conn is None:
        return
    try:
        if on:
            raise_alarm(conn, settings, alarm, message)
        else:
            clear_alarm(conn, settings, alarm)
    except redis.RedisError:
        pass  # the files were handled; the alarm shows once Redis is back and this runs again


def clean_stale_tmp(directories: Iterable[Path], now: float) -> int:
    """Delete temp files (and temp directories, like a render's pieces) whose writer is long gone."""
    count = 0
    for d in directories:
        if not d.is_dir():
            continue
        for f in d.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if is_tmp(f) and now - f.stat().st_mtime > STALE_TMP_SECONDS:
                    if f.is_dir():
                        shutil.rmtree(f, ignore_errors=True)
                    else:
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
