"""Identity and storage: the box's id, its folders, its Redis server and its logs."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from pathlib import Path

from common.settings.fields import RESTART, Concern, Parser, setting, url

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("auto", "json", "text")
_DEVICE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _check_device_id(value: str) -> None:
    if not _DEVICE_ID.fullmatch(value):
        raise ValueError("use 1-64 letters, digits, dots, dashes or underscores")


@dataclass(frozen=True)
class IdentitySettings(Concern):
    """Who the box is, where it keeps its files, which Redis it talks to, how it logs."""

    title = "Identity, storage, Redis, logs"

    device_id: str = setting(
        factory=socket.gethostname,
        shown="<the host name>",
        help="This box's id; namespaces every Redis key and queue (default: the host name).",
        check=_check_device_id,
    )
    data_dir: Path = setting(Path("./data"), "Clips, finished highlights, journals, Redis data.")
    buffer_dir: Path = setting(
        Path("/dev/shm/gravanois"),
        "Rolling segments, one sub-folder per camera (tmpfs keeps the SD card alive).",
    )
    redis_url: str = setting(
        "redis://127.0.0.1:6379/0",
        "Redis server holding the queues and the index.",
        check=url("redis://", "rediss://", "unix://", like="redis://127.0.0.1:6379/0"),
    )
    log_level: str = setting(
        "INFO",
        "DEBUG, INFO, WARNING or ERROR.",
        # Any case is accepted, as Python's logging does.
        parse=Parser(str.upper),
        choices=LOG_LEVELS,
        remote=RESTART,
    )
    log_format: str = setting(
        "auto", "auto (text on a terminal, JSON lines otherwise), json or text.", choices=LOG_FORMATS
    )

    @property
    def clips_dir(self) -> Path:
        """Raw highlights (concat output) and their sidecars before rendering."""
        return self.data_dir / "clips"

    @property
    def output_dir(self) -> Path:
        """Finished highlights: watermarked clip, thumbnail, sidecar (the seed's 20_highlights_wm)."""
        return self.data_dir / "highlights"

    @property
    def journal_dir(self) -> Path:
        """Presses not yet handed to Redis."""
        return self.data_dir / "journal"

    def camera_buffer_dir(self, camera_id: str) -> Path:
        """Segment folder of one camera."""
        return self.buffer_dir / camera_id
