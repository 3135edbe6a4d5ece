"""The press journal: presses Redis could not take, one small JSON file each, written atomically.

The trigger hands a press to Redis first and journals it only when Redis does not answer (a full data
disk must not stop a press while Redis is up). The trigger removes the file once the build job is
enqueued; the recorder's retention treats every journalled press as a pin on its window (Redis may be
down, so it cannot rely on Redis pins then).

`PressRecord` is what one press asks for (camera, time, window), the same data whether it is journalled
here, handed to Redis as the build job's argument or named in a sidecar. It is a *record* of a press, not
"a Press": the word press alone is the act and its user-facing names (the command `gravanois trigger
press`, the module trigger/press.py that takes one).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from common.fsutil import is_tmp, read_json, write_json_atomic
from common.ids import press_id
from common.timeutil import iso

# A journalled press older than this is given up by retention (its segments may then go).
MAX_AGE_SECONDS = 24 * 3600
# A press time before this is a clock that was never set, or garbage (2000-01-01T00:00:00Z).
EARLIEST_PRESS = 946684800.0
# A press time this far past now is a typo or a wrong clock, not clock skew between processes.
FUTURE_SLACK_SECONDS = 5.0


@dataclass(frozen=True)
class PressRecord:
    """What one button press asks for: which camera, when (epoch s, taken at the button), the window."""

    camera: str
    at: float
    pre: float
    post: float
    source: str = "cli"

    @property
    def press_id(self) -> str:
        """Deterministic id from camera and press time: the same press always has the same id."""
        return press_id(self.camera, self.at)

    @property
    def window(self) -> tuple[float, float]:
        """The wall-clock window the highlight must cover."""
        return (self.at - self.pre, self.at + self.post)


def press_time_problem(at: float, at_now: float) -> str | None:
    """Why `at` cannot be a press time (before 2000, or in the future), or None; the build job's bounds."""
    try:
        shown = iso(at)
    except (ValueError, OverflowError, OSError):  # beyond what a date can hold
        shown = repr(at)
    if at > at_now + FUTURE_SLACK_SECONDS:
        return f"press time {shown} is in the future (now {iso(at_now)}): a press can only be now or past"
    if at < EARLIEST_PRESS:
        return f"press time {shown} is before 2000: not a plausible press (is the clock set?)"
    return None


def write(journal_dir: Path, press: PressRecord) -> Path:
    """Journal a press (atomic); returns its file."""
    path = journal_dir / f"{press.press_id}.json"
    write_json_atomic(path, asdict(press))
    return path


def pending(journal_dir: Path, camera: str | None = None) -> list[PressRecord]:
    """Journalled presses, oldest first (optionally of one camera); unreadable files are skipped."""
    # Asked once a second by each recorder, mostly of an empty folder: one listdir, no glob machinery.
    presses: list[PressRecord] = []
    try:
        names = os.listdir(journal_dir)
    except OSError:  # no journal yet (or not a folder, or unreadable): nothing pending
        return presses
    for name in names:
        path = journal_dir / name
        if not name.endswith(".json") or is_tmp(path):
            continue
        try:
            press = PressRecord(**read_json(path))
        except (OSError, ValueError, TypeError):
            continue
        if camera is None or press.camera == camera:
            presses.append(press)
    return sorted(presses, key=lambda p: p.at)


def remove(journal_dir: Path, press: PressRecord) -> None:
    """Forget a press once Redis holds its job."""
    with contextlib.suppress(FileNotFoundError):
        (journal_dir / f"{press.press_id}.json").unlink()
