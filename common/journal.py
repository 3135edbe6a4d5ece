"""The press journal: presses not yet handed to Redis, one small JSON file each, written atomically.

A press is journalled *before* Redis is tried, so that neither a dead Redis nor a crash loses it.
The trigger removes the file once the build job is enqueued; the recorder's retention treats every
journalled press as a pin on its window (Redis may be down, so it cannot rely on Redis pins then).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path

from common.fsutil import is_tmp, read_json, write_json_atomic
from common.timeutil import compact

# A journalled press older than this is given up by retention (its segments may then go).
MAX_AGE_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Press:
    """One button press: which camera, when (epoch s, taken at the button), and the window sizes."""

    camera: str
    at: float
    pre: float
    post: float
    source: str = "cli"

    @property
    def press_id(self) -> str:
        """Deterministic id from camera and press time: the same press always has the same id."""
        return f"{self.camera}-{compact(self.at)}"

    @property
    def window(self) -> tuple[float, float]:
        """The wall-clock window the highlight must cover."""
        return (self.at - self.pre, self.at + self.post)


def write(journal_dir: Path, press: Press) -> Path:
    """Journal a press (atomic); returns its file."""
    path = journal_dir / f"{press.press_id}.json"
    write_json_atomic(path, asdict(press))
    return path


def pending(journal_dir: Path, camera: str | None = None) -> list[Press]:
    """Journalled presses, oldest first (optionally of one camera); unreadable files are skipped."""
    presses = []
    if not journal_dir.is_dir():
        return presses
    for path in journal_dir.glob("*.json"):
        if is_tmp(path):
            continue
        try:
            press = Press(**read_json(path))
        except (OSError, ValueError, TypeError):
            continue
        if camera is None or press.camera == camera:
            presses.append(press)
    return sorted(presses, key=lambda p: p.at)


def remove(journal_dir: Path, press: Press) -> None:
    """Forget a press once Redis holds its job."""
    with contextlib.suppress(FileNotFoundError):
        (journal_dir / f"{press.press_id}.json").unlink()
