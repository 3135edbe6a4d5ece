"""Cameras and recording: which cameras, how each records, how long its segments are kept."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from common.ids import is_camera_id
from common.settings.fields import RESTART, Check, Concern, Parser, SettingsError, invalid, setting

if TYPE_CHECKING:
    from common.settings.core import Settings

SYNTHETIC_SOURCE = "testsrc"
RECORD_MODES = ("copy", "encode")
ENCODERS = ("libx264", "h264_v4l2m2m")
RTSP_TRANSPORTS = ("tcp", "udp")
# Longest court name (it is the poster's and the screen's title, and part of a download's file name).
MAX_NAME = 40
# Longest segment a recorder may be asked for (the index looks this far back for an overlapping one).
MAX_SEG_TIME = 60.0


@dataclass(frozen=True)
class Camera:
    """One camera: its id (used in file and key names), what ffmpeg reads, how it records, and the
    court's name as people read it."""

    id: str
    source: str = SYNTHETIC_SOURCE
    mode: str = ""  # empty: the box-wide GN_RECORD_MODE (camera_mode)
    name: str = ""  # empty: people read the id (label)

    @property
    def label(self) -> str:
        """The court as pages, the poster, the screen, the dashboard and `status` name it."""
        return self.name or self.id


def parse_cameras(raw: str) -> tuple[Camera, ...]:
    """Cameras from JSON: a mapping id → source (or → {source, mode, name}), or a list of objects with
    an id."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        raise SettingsError(
            'GN_CAMERAS is not valid JSON: write it like {"cam1": "rtsp://host/stream"}'
        ) from None
    items: list[dict[str, Any]] = []
    if isinstance(data, dict):
        for cam_id, spec in data.items():
            spec = {"source": spec} if isinstance(spec, str) else dict(spec)
            items.append({"id": cam_id, **spec})
    elif isinstance(data, list) and all(isinstance(x, dict) for x in data):
        items = list(data)
    else:
        raise SettingsError('GN_CAMERAS must be a JSON object like {"cam1": "rtsp://host/stream"}')
    cams = []
    for item in items:
        unknown = set(item) - {"id", "source", "mode", "name"}
        if unknown:
            raise SettingsError(
                f"GN_CAMERAS: unknown key(s) {sorted(unknown)}; use id, source, mode and name"
            )
        name = item.get("name", "")
        if not isinstance(name, str):
            raise SettingsError(
                f'GN_CAMERAS: the name of camera {item.get("id")!r} must be text, like "Quadra Central"'
            )
        cams.append(
            Camera(
                id=str(item.get("id", "")),
                source=str(item.get("source", SYNTHETIC_SOURCE)),
                mode=str(item.get("mode", "")),
                name=name.strip(),
            )
        )
    return tuple(cams)


def _write_cameras(cams: tuple[Camera, ...]) -> str:
    """The mapping form parse_cameras reads back; a camera's mode and name only where it has its own."""
    out: dict[str, Any] = {}
    for c in cams:
        own = {k: v for k, v in (("mode", c.mode), ("name", c.name)) if v}
        out[c.id] = {"source": c.source, **own} if own else c.source
    return json.dumps(out, ensure_ascii=False)


def _check_cameras(cams: tuple[Camera, ...]) -> None:
    if not cams:
        raise ValueError("configure at least one camera")
    seen: set[str] = set()
    for cam in cams:
        if not is_camera_id(cam.id):
            raise ValueError(f"camera id {cam.id!r} must be 1-32 letters, digits, dashes or underscores")
        if cam.id in seen:
            raise ValueError(f"camera id {cam.id!r} appears twice")
        if cam.mode not in ("", *RECORD_MODES):
            raise ValueError(f"camera {cam.id!r} mode must be one of {', '.join(RECORD_MODES)}")
        if not cam.source:
            raise ValueError(f"camera {cam.id!r} needs a source")
        if len(cam.name) > MAX_NAME or not cam.name.isprintable():
            raise ValueError(
                f"camera {cam.id!r} name must be at most {MAX_NAME} printable characters on one line"
            )
        seen.add(cam.id)


def buffer_margin(s: CameraSettings) -> float:
    """Extra seconds the buffer keeps beyond pre+post: the wait for the closing segment and a job's start."""
    return max(10.0, 4 * s.seg_time)


def _buffer_holds_the_window(s: Settings) -> None:
    margin = buffer_margin(s)
    needed = s.pre_seconds + s.post_seconds + margin
    if s.buffer_seconds < needed:
        raise invalid("buffer_seconds", f"it must be at least pre + post + {margin:g} s margin = {needed:g}")


def camera_mode(s: CameraSettings, cam: Camera) -> str:
    """A camera's record mode: its own, or the box-wide default."""
    return cam.mode or s.record_mode


@dataclass(frozen=True)
class CameraSettings(Concern):
    """The cameras, how their ffmpeg records, and the rolling buffer of segments."""

    title = "Cameras and recording"
    cross_checks: ClassVar[tuple[Check, ...]] = (_buffer_holds_the_window,)

    cameras: tuple[Camera, ...] = setting(
        (Camera("cam1"),),
        'Cameras as JSON: {"cam1": "rtsp://…"} or {"cam1": {"source": "…", "mode": "copy", '
        '"name": "Quadra Central"}} '
        "(name: what people read; the id names files and keys).",
        parse=Parser(parse_cameras, write=_write_cameras),
        check=_check_cameras,
        remote=RESTART,
    )
    record_mode: str = setting(
        "copy",
        "copy (stream copy, near-zero CPU) or encode (libx264/hardware).",
        choices=RECORD_MODES,
        remote=RESTART,
    )
    encoder: str = setting(
        "libx264", "Encoder for encode mode: libx264 or h264_v4l2m2m (Pi 4).", choices=ENCODERS
    )
    rtsp_transport: str = setting(
        "tcp", "RTSP transport: tcp (default) or udp.", choices=RTSP_TRANSPORTS, remote=RESTART
    )
    rtsp_timeout_seconds: float = setting(
        5.0, "Socket timeout for network cameras, in seconds.", above=0, unit="seconds"
    )
    seg_time: float = setting(
        1.0, "Target segment length in seconds.", above=0, at_most=MAX_SEG_TIME, unit="seconds"
    )
    # Its bound joins the highlight window's: see _buffer_holds_the_window.
    buffer_seconds: float = setting(
        120.0,
        "Seconds of segments kept per camera; must exceed pre+post+margin.",
        remote=RESTART,
    )
    stall_seconds: float = setting(
        0.0,
        "No new segment for this long restarts ffmpeg (0: 3 × seg_time + 5).",
        at_least=0,
        zero="automatic",
        remote=RESTART,
    )
    restart_backoff_max: float = setting(
        30.0, "Longest wait between ffmpeg restarts, in seconds.", above=0, unit="seconds"
    )
    buffer_min_free_mb: int = setting(
        64, "Free-space floor on the buffer disk; below it the oldest segments go.", at_least=0
    )

    @property
    def effective_stall_seconds(self) -> float:
        """How long without a new segment before the watchdog restarts ffmpeg."""
        return self.stall_seconds or 3 * self.seg_time + 5

    def camera(self, camera_id: str) -> Camera:
        """The configured camera with this id, or a SettingsError naming the known ones."""
        for cam in self.cameras:
            if cam.id == camera_id:
                return cam
        known = ", ".join(c.id for c in self.cameras) or "none"
        raise SettingsError(f"unknown camera {camera_id!r}: GN_CAMERAS has {known}")
