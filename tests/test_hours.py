"""common.hours: GN_OPEN_HOURS read once, answering "open at t?" and "next opening after t?"."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from common.hours import HoursError, OpeningHours, of, parse_open_hours

SAO_PAULO = ZoneInfo("America/Sao_Paulo")  # UTC-3, no daylight saving time since 2019


def local(year: int, month: int, day: int, hour: int, minute: int, zone: ZoneInfo = SAO_PAULO) -> float:
    """Epoch seconds of a wall-clock time in `zone`."""
    return datetime(year, month, day, hour, minute, tzinfo=zone).timestamp()


def test_a_day_span_in_the_venue_time_zone() -> None:
    hours = OpeningHours.parse("08:00-12:00, 14:00-23:00", "America/Sao_Paulo")
    assert hours.is_open(local(2026, 3, 10, 8, 0)) and hours.is_open(local(2026, 3, 10, 11, 59))
    assert not hours.is_open(local(2026, 3, 10, 12, 0))  # the end is not open
    assert not hours.is_open(local(2026, 3, 10, 13, 0))
    # 23:30 in São Paulo is 02:30 UTC: the venue's zone decides, not UTC.
    assert not hours.is_open(local(2026, 3, 10, 23, 30))
    assert hours.next_opening(local(2026, 3, 10, 13, 0)) == local(2026, 3, 10, 14, 0)
    assert hours.next_opening(local(2026, 3, 10, 23, 30)) == local(2026, 3, 11, 8, 0)
    # Open now: the next opening is the next range's start.
    assert hours.next_opening(local(2026, 3, 10, 9, 0)) == local(2026, 3, 10, 14, 0)
    assert hours.next_opening(local(2026, 3, 10, 14, 0)) == local(2026, 3, 11, 8, 0)


def test_a_span_over_midnight() -> None:
    hours = OpeningHours.parse("18:00-02:00", "America/Sao_Paulo")
    for open_at in ((2026, 3, 10, 18, 0), (2026, 3, 10, 23, 59), (2026, 3, 11, 0, 0), (2026, 3, 11, 1, 59)):
        assert hours.is_open(local(*open_at)), open_at
    for closed_at in ((2026, 3, 11, 2, 0), (2026, 3, 11, 12, 0), (2026, 3, 11, 17, 59)):
        assert not hours.is_open(local(*closed_at)), closed_at
    assert hours.next_opening(local(2026, 3, 11, 3, 0)) == local(2026, 3, 11, 18, 0)
    assert hours.next_opening(local(2026, 3, 11, 1, 0)) == local(2026, 3, 11, 18, 0)
    # The same hours in UTC are other instants.
    utc = OpeningHours.parse("18:00-02:00", "UTC")
    assert utc.is_open(local(2026, 3, 10, 16, 0)) and not hours.is_open(local(2026, 3, 10, 16, 0))
    assert utc.next_opening(local(2026, 3, 10, 3, 0, zone=ZoneInfo("UTC"))) == (
        datetime(2026, 3, 10, 18, 0, tzinfo=UTC).timestamp()
    )


def test_open_answer_and_next_opening_agree_across_days() -> None:
    """The two questions come from one reading: just before each opening it is closed, at it open."""
    hours = OpeningHours.parse("22:00-03:00,09:30-12:00", "Europe/Lisbon")  # with daylight saving time
    t = local(2026, 3, 27, 0, 0, zone=ZoneInfo("Europe/Lisbon"))  # the clocks go forward on the 29th
    for _ in range(12):
        nxt = hours.next_opening(t)
        assert nxt is not None and nxt > t
        assert hours.is_open(nxt) and not hours.is_open(nxt - 60)
        t = nxt
    assert datetime.fromtimestamp(t, ZoneInfo("Europe/Lisbon")).strftime("%H:%M") in ("22:00", "09:30")


def test_edges_of_the_day() -> None:
    assert (
        OpeningHours.parse("", "UTC").is_open(0.0) and OpeningHours.parse("  ", "UTC").next_opening(0) is None
    )
    whole = OpeningHours.parse("00:00-24:00", "UTC")
    assert whole.is_open(local(2026, 3, 10, 23, 59, zone=ZoneInfo("UTC")))
    # 24:00 as a start is that midnight: open from 00:00 to 02:00, and that is when it opens.
    late = OpeningHours.parse("24:00-02:00", "UTC")
    assert late.is_open(local(2026, 3, 10, 1, 0, zone=ZoneInfo("UTC")))
    assert late.next_opening(local(2026, 3, 10, 3, 0, zone=ZoneInfo("UTC"))) == local(
        2026, 3, 11, 0, 0, zone=ZoneInfo("UTC")
    )
    # An empty range is never open, and never opens.
    empty = OpeningHours.parse("08:00-08:00", "UTC")
    assert not empty.is_open(local(2026, 3, 10, 8, 0, zone=ZoneInfo("UTC")))
    assert empty.next_opening(0.0) is None


def test_unreadable_hours_say_how_to_write_them() -> None:
    assert parse_open_hours("08:00-12:00, 14:00-23:30") == [(480, 720), (840, 1410)]
    with pytest.raises(HoursError, match="write ranges like 08:00-23:00"):
        parse_open_hours("8-12")
    with pytest.raises(HoursError, match="impossible time"):
        parse_open_hours("08:00-25:00")


def test_the_box_reads_its_hours_once(make_settings) -> None:
    s = make_settings(open_hours="08:00-23:00", timezone="America/Sao_Paulo")
    assert of(s) is of(s)
    assert of(s).is_open(local(2026, 3, 10, 12, 0)) and not of(s).is_open(local(2026, 3, 10, 23, 30))
