"""Where a highlight's files live, derived from its name alone and checked to lie in the box's dirs.

A job's argument comes from Redis, which anyone who reaches it can write: a render or upload job names
its highlight by the sidecar's file name (a path is accepted only when it points into the clips or
output dir), and every file the job then reads, writes or deletes is built here from that name, never
taken from the sidecar's contents.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import ids
from common.pipeline import PermanentError
from common.settings import Settings

VERTICAL_SUFFIX = "_vertical"


@dataclass(frozen=True)
class HighlightFiles:
    """Every file of one highlight, in the clips dir (raw) and the output dir (finished)."""

    stem: str
    clips_dir: Path
    output_dir: Path

    @property
    def press_id(self) -> str:
        """The press id of this highlight (its Redis hash and job ids), derived from the name."""
        return ids.press_id_of_stem(self.stem)

    @property
    def raw(self) -> Path:
        """The raw clip the build made."""
        return self.clips_dir / f"{self.stem}.mp4"

    @property
    def raw_sidecar(self) -> Path:
        """The sidecar beside the raw clip (until the render moves it)."""
        return self.clips_dir / f"{self.stem}.json"

    @property
    def video(self) -> Path:
        """The watermarked clip."""
        return self.output_dir / f"{self.stem}.mp4"

    @property
    def thumbnail(self) -> Path:
        """The JPEG thumbnail."""
        return self.output_dir / f"{self.stem}.jpg"

    @property
    def vertical(self) -> Path:
        """The optional 9:16 crop."""
        return self.output_dir / f"{self.stem}{VERTICAL_SUFFIX}.mp4"

    @property
    def sidecar(self) -> Path:
        """The finished highlight's sidecar."""
        return self.output_dir / f"{self.stem}.json"

    def current_sidecar(self) -> Path | None:
        """The sidecar where it is now: beside the raw clip until rendered, then in the output dir."""
        for path in (self.raw_sidecar, self.sidecar):
            if path.is_file():
                return path
        return None


def for_stem(settings: Settings, stem: str) -> HighlightFiles:
    """The files of the highlight named `stem` (a PermanentError for a name that is not one)."""
    if not isinstance(stem, str) or ids.parse_stem(stem) is None:
        raise PermanentError(f"{str(stem)[:80]!r} is not a highlight name (highlight_<camera>_<time>)")
    return HighlightFiles(stem, settings.clips_dir, settings.output_dir)


def from_job_arg(settings: Settings, arg: Any) -> HighlightFiles:
    """The highlight a render or upload job names: a sidecar file name, or its path in the box's dirs."""
    if not isinstance(arg, str) or not arg or "\x00" in arg:
        raise PermanentError(f"the job must name a highlight's sidecar, got {type(arg).__name__}")
    path = Path(arg)
    if path.suffix != ".json":
        raise PermanentError(f"{path.name[:80]!r} is not a sidecar (.json) file name")
    if path.parent != Path("."):
        parent = path.parent.resolve()
        allowed = {settings.clips_dir.resolve(), settings.output_dir.resolve()}
        if parent not in allowed:
            raise PermanentError(
                f"the job names a file outside this box's clips and output dirs ({str(path)[:120]})"
            )
    return for_stem(settings, path.stem)
