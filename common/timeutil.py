"""UTC times: stored and shown to machines as ISO 8601 with `Z`; computed as epoch seconds."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

# The shape `compact` writes: date, `T`, time to the millisecond, `Z`.
COMPACT = r"\d{8}T\d{9}Z"


def now() -> float:
    """Wall-clock now, epoch seconds."""
    return time.time()


def iso(ts: float | None = None) -> str:
    """Epoch seconds → `2025-08-17T19:50:00.123Z` (milliseconds kept)."""
    dt = datetime.fromtimestamp(now() if ts is None else ts, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> float:
    """ISO 8601 (with `Z` or an offset; naive means UTC) → epoch seconds."""
    dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def compact(ts: float) -> str:
    """Epoch seconds → `20250817T195000123Z`, safe in file names and job ids."""
    dt = datetime.fromtimestamp(ts, tz=UTC)
    return dt.strftime("%Y%m%dT%H%M%S") + f"{dt.microsecond // 1000:03d}Z"


def parse_compact(text: str) -> float:
    """`20250817T195000123Z` → epoch seconds; ValueError for text `compact` does not write."""
    if not re.fullmatch(COMPACT, text):
        raise ValueError(f"{text[:40]!r} is not a compact UTC time like 20250817T195000123Z")
    seconds = datetime.strptime(text[:15], "%Y%m%dT%H%M%S").replace(tzinfo=UTC).timestamp()
    return seconds + int(text[15:18]) / 1000
