"""The venue's opening hours (GN_OPEN_HOURS in GN_TIMEZONE), read once: open at t? next opening after t?

`08:00-12:00,14:00-23:30` lists ranges of local wall-clock time. A range that ends before it starts
crosses midnight (`18:00-02:00`); `24:00` is the end of the day (as a start, the midnight it also is);
a range that starts where it ends is empty. No hours at all means always open. The trigger refuses
presses outside the hours; the upload stage waits for the next opening when the backend says closed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from common.settings import Settings

DAY_MINUTES = 24 * 60
_RANGE = re.compile(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*")


class HoursError(ValueError):
    """GN_OPEN_HOURS cannot be read; the message is one line saying how to write it."""


def parse_open_hours(text: str) -> list[tuple[int, int]]:
    """`08:00-12:00,14:00-23:30` → [(480, 720), (840, 1410)] minutes; a range may cross midnight."""
    ranges = []
    for part in text.split(","):
        m = _RANGE.fullmatch(part)
        if not m:
            raise HoursError(
                f"GN_OPEN_HOURS={text!r} is not valid: write ranges like 08:00-23:00 or 08:00-12:00,14:00-22:00"  # noqa: E501
            )
        h1, m1, h2, m2 = (int(x) for x in m.groups())
        if h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59:
            raise HoursError(f"GN_OPEN_HOURS={text!r} has an impossible time: hours 0-24, minutes 0-59")
        ranges.append((h1 * 60 + m1, h2 * 60 + m2))
    return ranges


@dataclass(frozen=True)
class OpeningHours:
    """Opening hours in a time zone; `ranges` is None when the venue never closes."""

    # (start, end) minutes after local midnight, start < 24:00, none empty; end < start crosses midnight.
    ranges: tuple[tuple[int, int], ...] | None
    zone: ZoneInfo

    @classmethod
    def parse(cls, text: str, timezone: str) -> OpeningHours:
        """The hours GN_OPEN_HOURS=`text` says, in the IANA zone `timezone` (HoursError when unreadable)."""
        if not text.strip():
            return cls(None, ZoneInfo(timezone))
        kept = [(start % DAY_MINUTES, end) for start, end in parse_open_hours(text) if start != end]
        return cls(tuple((start, end) for start, end in kept if start != end), ZoneInfo(timezone))

    def is_open(self, at: float) -> bool:
        """True when the epoch time `at` falls inside a range (in the venue's time zone)."""
        if self.ranges is None:
            return True
        local = datetime.fromtimestamp(at, tz=UTC).astimezone(self.zone)
        minute = local.hour * 60 + local.minute
        return any(
            (start <= minute < end) if start < end else (minute >= start or minute < end)
            for start, end in self.ranges
        )

    def next_opening(self, after: float) -> float | None:
        """Epoch time of the first range start after `after`; None when the venue never closes, or never
        opens (every range empty)."""
        if not self.ranges:
            return None
        midnight = datetime.fromtimestamp(after, tz=UTC).astimezone(self.zone)
        midnight = midnight.replace(hour=0, minute=0, second=0, microsecond=0)
        # Wall-clock arithmetic in the zone: 08:00 is 08:00 on a day the clocks change, too.
        starts = (
            (midnight + timedelta(days=day, minutes=start)).timestamp()
            for day in (0, 1)
            for start, _ in self.ranges
        )
        return min(t for t in starts if t > after)


def of(settings: Settings) -> OpeningHours:
    """The box's opening hours (GN_OPEN_HOURS, GN_TIMEZONE), parsed once per value."""
    return _parsed(settings.open_hours, settings.timezone)


@lru_cache(maxsize=8)
def _parsed(text: str, timezone: str) -> OpeningHours:
    return OpeningHours.parse(text, timezone)
