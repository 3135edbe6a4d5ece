"""The project's ids, each shape spelled here once: camera id, press id, highlight stem.

A camera id names folders, Redis keys and job ids. A press id, `<camera>-<UTC press time>` like
`cam1-20261206T051628666Z`, names a highlight in Redis, in job ids and in the web app's URLs. A stem,
`highlight_<camera>_<UTC press time>`, names the highlight's files. Ids come back from Redis, job
arguments and requests, which others can write: every reader checks them here, never with its own rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from common.timeutil import COMPACT, compact, parse_compact

# 1-32 letters, digits, dashes or underscores, the first a letter or a digit: safe in paths and keys.
CAMERA_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
# `<camera>-<UTC press time>`; groups: camera, time.
PRESS_ID = re.compile(rf"({CAMERA_ID.pattern})-({COMPACT})")
# `highlight_<camera>_<UTC press time>`; groups: camera, time. A highlight's files add a suffix to it.
STEM = re.compile(rf"highlight_({CAMERA_ID.pattern})_({COMPACT})")


def is_camera_id(value: object) -> bool:
    """True for a well-formed camera id (whether such a camera is configured is the settings' question)."""
    return isinstance(value, str) and CAMERA_ID.fullmatch(value) is not None


def press_id(camera: str, at: float) -> str:
    """The id of the press of `camera` at `at` (epoch s): the same press always gets the same id."""
    return f"{camera}-{compact(at)}"


def highlight_stem(camera: str, at: float) -> str:
    """The name (without suffix) of every file of the highlight of `camera` pressed at `at`."""
    return f"highlight_{camera}_{compact(at)}"


def parse_press_id(value: object) -> tuple[str, float] | None:
    """(camera, press time) of a press id, or None when it is not exactly one this box would make."""
    return _parse(PRESS_ID, press_id, value)


def parse_stem(value: object) -> tuple[str, float] | None:
    """(camera, press time) of a highlight stem, or None when it is not exactly one this box would make."""
    return _parse(STEM, highlight_stem, value)


def stem_of_press_id(value: str) -> str:
    """The stem of the highlight a press id names; ValueError for an id that is not a press id."""
    parsed = parse_press_id(value)
    if parsed is None:
        raise ValueError(f"{value[:80]!r} is not a press id (<camera>-<time>)")
    return highlight_stem(*parsed)


def press_id_of_stem(stem: str) -> str:
    """The press id of the highlight a stem names; ValueError for a name that is not a stem."""
    parsed = parse_stem(stem)
    if parsed is None:
        raise ValueError(f"{stem[:80]!r} is not a highlight name (highlight_<camera>_<time>)")
    return press_id(*parsed)


def _parse(
    pattern: re.Pattern[str], make: Callable[[str, float], str], value: object
) -> tuple[str, float] | None:
    """(camera, time) of `value` when it matches `pattern` and `make` gives it back to the letter (one
    spelling per highlight: no second name for the same file or key)."""
    m = pattern.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        return None
    try:
        at = parse_compact(m[2])
    except ValueError:  # the shape of a time, not a time (month 13)
        return None
    return (m[1], at) if make(m[1], at) == value else None
