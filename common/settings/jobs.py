"""Jobs and retention: retries of the build/render/upload jobs, and how long their results stay."""

from __future__ import annotations

from dataclasses import dataclass

from common.settings.fields import RESTART, Concern, Parser, setting


def _read_seconds_list(raw: str) -> tuple[int, ...]:
    return tuple(int(x) for x in raw.split(",") if x.strip())


def _check_intervals(intervals: tuple[int, ...]) -> None:
    if any(i < 0 for i in intervals):
        raise ValueError("intervals cannot be negative")


SECONDS_LIST = Parser(
    _read_seconds_list,
    "whole seconds separated by commas, like 10,30,90",
    lambda values: ",".join(str(v) for v in values),
)


@dataclass(frozen=True)
class JobSettings(Concern):
    """How often a failed job is tried again, and the bounds on what the jobs leave on disk."""

    title = "Jobs, retries, retention"

    max_attempts: int = setting(
        3, "Attempts for each build/render/upload job.", at_least=1, at_most=20, remote=RESTART
    )
    retry_intervals: tuple[int, ...] = setting(
        (10, 30, 90),
        "Seconds between retries, comma-separated.",
        parse=SECONDS_LIST,
        check=_check_intervals,
        remote=RESTART,
    )
    failure_ttl_days: float = setting(
        14.0, "Days a failed job stays in the failed registry.", above=0, unit="days"
    )
    keep_highlights_days: float = setting(
        14.0,
        "Days finished highlights are kept on the box.",
        above=0,
        unit="days",
        remote=RESTART,
    )
    keep_highlights_max: int = setting(
        500,
        "Most finished highlights kept on the box (oldest go first).",
        at_least=1,
        remote=RESTART,
    )
    output_min_free_mb: int = setting(
        500, "Free-space floor on the data disk; below it the oldest outputs go.", at_least=0
    )
