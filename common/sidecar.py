"""The sidecar JSON beside each highlight: the seed's fields plus camera, press time and window.

Seed fields: type, status, created_at, file_name, size_bytes, sha256, meta {codec, width, height, fps,
duration_sec}, pre_seconds, post_seconds, seg_time; after rendering: updated_at, wm_path, thumbnail_path,
meta_wm. Added here: camera, press_at, press_id, window, segments, gaps, attempts, last_error, remote.
Always written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common.fsutil import read_json, write_json_atomic
from common.ids import highlight_stem
from common.journal import PressRecord
from common.log import redact
from common.pipeline import SidecarStatus
from common.timeutil import iso

META_FIELDS = ("codec", "width", "height", "fps", "duration_sec")


def clip_name(press: PressRecord) -> str:
    """`highlight_<camera>_<UTC press time>.mp4`, the name the clip keeps through every stage."""
    return f"{highlight_stem(press.camera, press.at)}.mp4"


def path_for(clip: Path) -> Path:
    """The sidecar of a clip: same name, `.json`."""
    return clip.with_suffix(".json")


def new(press: PressRecord, clip: Path, **fields: Any) -> dict[str, Any]:
    """A fresh sidecar for a press's raw clip (`fields` fill size, sha256, meta, window, …)."""
    a, b = press.window
    data: dict[str, Any] = {
        "type": "highlight_raw",
        "status": SidecarStatus.QUEUED,
        "created_at": iso(),
        "file_name": clip.name,
        "camera": press.camera,
        "press_id": press.press_id,
        "press_at": iso(press.at),
        "pre_seconds": press.pre,
        "post_seconds": press.post,
        "window": {"start": iso(a), "end": iso(b)},
        "attempts": 0,
    }
    data.update(fields)
    return data


def load(path: Path) -> dict[str, Any]:
    """Read a sidecar."""
    data: dict[str, Any] = read_json(path)
    return data


def save(path: Path, data: dict[str, Any]) -> None:
    """Write a sidecar atomically (error texts are redacted first)."""
    if isinstance(data.get("last_error"), str):
        data["last_error"] = redact(data["last_error"])
    write_json_atomic(path, data)


def update(path: Path, **changes: Any) -> dict[str, Any]:
    """Read, change, stamp `updated_at`, write atomically; returns the new content."""
    data = load(path)
    data.update(changes)
    data["updated_at"] = iso()
    save(path, data)
    return data
