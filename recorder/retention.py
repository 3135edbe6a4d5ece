"""Retention: which segments may go. A pure decision (`plan`) and the few lines that carry it out.

Rules, in order of importance:
1. A segment overlapping a pin (a pending highlight, from Redis) or a journalled press window (a press
   Redis has not seen yet) is kept.
2. Segments that ended more than GN_BUFFER_SECONDS ago go — but only while the pins are known: with
   Redis down nothing is deleted by age (a pin may exist that we cannot see).
3. Disk guard: below GN_BUFFER_MIN_FREE_MB free, the oldest unprotected segments go until the floor is
   met; only if that is not enough do protected ones go too (a full tmpfs stops all recording, which
   would lose the protected highlight's post-roll anyway). The caller raises an alarm while the disk is low.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common import journal
from common.segments import Pin, Segment

MIB = 1 << 20
Window = tuple[float, float]


@dataclass(frozen=True)
class Plan:
    """What retention decided: segments to delete (oldest first) and why."""

    delete: list[Segment] = field(default_factory=list)
    by_age: int = 0
    by_disk: int = 0
    protected_dropped: int = 0
    disk_low: bool = False


def protected(seg: Segment, windows: Iterable[Window]) -> bool:
    """True if the segment overlaps any window that a highlight needs."""
    return any(seg.overlaps(a, b) for a, b in windows)


def plan(
    segments: Sequence[Segment],
    sizes: Mapping[str, int],
    windows: Sequence[Window],
    now: float,
    buffer_seconds: float,
    free_mb: float,
    min_free_mb: float,
    pins_known: bool = True,
) -> Plan:
    """Decide which segments to delete. No I/O: tests call it directly.

    `segments` are oldest first (as the indexer keeps them), `sizes` their sizes in bytes by name. By
    age only the oldest few are looked at, whatever the buffer holds; the disk guard looks at them all.
    """
    cutoff = now - buffer_seconds
    doomed: list[Segment] = []
    freed = 0
    if pins_known:
        for seg in segments:
            if seg.start >= cutoff:
                break  # this one and all later ones end after the cutoff
            if seg.end < cutoff and not protected(seg, windows):
                doomed.append(seg)
                freed += sizes.get(seg.name, 0)
    by_age = len(doomed)
    disk_low = free_mb < min_free_mb
    protected_dropped = 0
    if disk_low:
        need = (min_free_mb - free_mb) * MIB - freed
        # The newest segment stays: it is what proves the camera is still recording.
        gone = set(doomed)
        rest = [(s, sizes.get(s.name, 0)) for s in segments[:-1] if s not in gone]
        unprotected = [(s, n) for s, n in rest if not protected(s, windows)]
        last_resort = [(s, n) for s, n in rest if protected(s, windows)]
        for group in (unprotected, last_resort):
            for seg, size in group:
                if need <= 0:
                    break
                doomed.append(seg)
                need -= size
                if group is last_resort:
                    protected_dropped += 1
    return Plan(
        delete=sorted(doomed),
        by_age=by_age,
        by_disk=len(doomed) - by_age,
        protected_dropped=protected_dropped,
        disk_low=disk_low,
    )


def windows_from(pins: Iterable[Pin], presses: Iterable[journal.PressRecord], now: float) -> list[Window]:
    """Windows to keep: Redis pins plus journalled presses (those not older than the journal's limit)."""
    out = [(p.start, p.end) for p in pins]
    out += [p.window for p in presses if now - p.at <= journal.MAX_AGE_SECONDS]
    return out


def delete_files(directory: str | Path, segments: Iterable[Segment]) -> None:
    """Remove segment files (already gone is fine)."""
    for seg in segments:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, seg.name))
