"""Settings: one frozen dataclass, read from CLI flags > environment > `.env` > defaults.

Every field maps to an environment variable `GN_<FIELD NAME IN CAPS>`. `.env.example` lists them all
(a test keeps it in sync with this file). Invalid values raise `SettingsError` with one line naming
the variable and saying what to change.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import socket
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values

from assets import default_logo
from common.hours import parse_open_hours
from common.ids import is_camera_id

ENV_PREFIX = "GN_"
SYNTHETIC_SOURCE = "testsrc"
RECORD_MODES = ("copy", "encode")
ENCODERS = ("libx264", "h264_v4l2m2m")
WM_ENGINES = ("ffmpeg", "moviepy")
WM_POSITIONS = ("bottom-right", "bottom-left", "top-right", "top-left")
WM_AT = ("render", "record")
LOG_FORMATS = ("auto", "json", "text")
X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)
# Longest pre-roll or post-roll a highlight may ask for (the build job refuses more, too).
MAX_SIDE_SECONDS = 900.0
# Longest segment a recorder may be asked for (the index looks this far back for an overlapping one).
MAX_SEG_TIME = 60.0


class SettingsError(ValueError):
    """A setting has a value the box cannot run with; the message is one line for the operator."""


@dataclass(frozen=True)
class Camera:
    """One camera: its id (used in file and key names), what ffmpeg reads, and how it records."""

    id: str
    source: str = SYNTHETIC_SOURCE
    mode: str = "copy"


def _meta(help: str, env: bool = True) -> dict[str, Any]:
    return {"help": help, "env": env}


@dataclass(frozen=True)
class Settings:
    """All settings of the box. Field `x` is read from `GN_X`; see `.env.example` for meanings."""

    # --- identity, storage, Redis
    device_id: str = field(
        default_factory=socket.gethostname,
        metadata=_meta("This box's id; namespaces every Redis key and queue (default: the host name)."),
    )
    data_dir: Path = field(
        default=Path("./data"), metadata=_meta("Clips, finished highlights, journals, Redis data.")
    )
    buffer_dir: Path = field(
        default=Path("/dev/shm/gravanois"),
        metadata=_meta("Rolling segments, one sub-folder per camera (tmpfs keeps the SD card alive)."),
    )
    redis_url: str = field(
        default="redis://127.0.0.1:6379/0", metadata=_meta("Redis server holding the queues and the index.")
    )
    # --- cameras and recording
    cameras: tuple[Camera, ...] = field(
        default=(Camera("cam1"),),
        metadata=_meta(
            'Cameras as JSON: {"cam1": "rtsp://…"} or [{"id": "cam1", "source": "…", "mode": "copy"}].'
        ),
    )
    record_mode: str = field(
        default="copy", metadata=_meta("copy (stream copy, near-zero CPU) or encode (libx264/hardware).")
    )
    encoder: str = field(
        default="libx264", metadata=_meta("Encoder for encode mode: libx264 or h264_v4l2m2m (Pi 4).")
    )
    rtsp_transport: str = field(default="tcp", metadata=_meta("RTSP transport: tcp (default) or udp."))
    rtsp_timeout_seconds: float = field(
        default=5.0, metadata=_meta("Socket timeout for network cameras, in seconds.")
    )
    seg_time: float = field(default=1.0, metadata=_meta("Target segment length in seconds."))
    buffer_seconds: float = field(
        default=120.0, metadata=_meta("Seconds of segments kept per camera; must exceed pre+post+margin.")
    )
    stall_seconds: float = field(
        default=0.0, metadata=_meta("No new segment for this long restarts ffmpeg (0: 3 × seg_time + 5).")
    )
    restart_backoff_max: float = field(
        default=30.0, metadata=_meta("Longest wait between ffmpeg restarts, in seconds.")
    )
    buffer_min_free_mb: int = field(
        default=64, metadata=_meta("Free-space floor on the buffer disk; below it the oldest segments go.")
    )
    # --- highlight window and trigger
    pre_seconds: float = field(default=40.0, metadata=_meta("Seconds before the press in the highlight."))
    post_seconds: float = field(default=10.0, metadata=_meta("Seconds after the press in the highlight."))
    cooldown_seconds: float = field(
        default=5.0, metadata=_meta("A second press on a camera within this many seconds is ignored.")
    )
    open_hours: str = field(
        default="", metadata=_meta("Opening hours like 08:00-23:00 (empty: always open).")
    )
    timezone: str = field(
        default="America/Sao_Paulo", metadata=_meta("Venue time zone for opening hours (IANA name).")
    )
    gpio_pin: int = field(default=17, metadata=_meta("BCM pin of the button (pull-up, press = low)."))
    gpio_debounce_ms: int = field(default=300, metadata=_meta("Button debounce, in milliseconds."))
    gpio_led_pin: int = field(
        default=0, metadata=_meta("BCM pin of a status LED that blinks on an accepted press (0: none).")
    )
    buttons: str = field(
        default="",
        metadata=_meta(
            'Map of buttons to cameras as JSON, e.g. {"17": "all", "BTN_2": "cam2"} (empty: all).'
        ),
    )
    serial_port: str = field(
        default="", metadata=_meta("Serial trigger device (empty: auto-detect under /dev/serial/by-id).")
    )
    serial_baud: int = field(default=115200, metadata=_meta("Serial trigger baud rate."))
    # --- render
    wm_logo: Path = field(
        default_factory=default_logo,
        metadata=_meta("Watermark logo (PNG with alpha); the default ships with the package."),
    )
    wm_logo2: Path | None = field(
        default=None, metadata=_meta("Optional second logo, placed in the opposite corner.")
    )
    wm_rel_width: float = field(default=0.2, metadata=_meta("Logo width as a fraction of the video width."))
    wm_opacity: float = field(default=0.6, metadata=_meta("Logo opacity, 0 to 1."))
    wm_margin: int = field(default=24, metadata=_meta("Logo margin from the edges, in pixels."))
    wm_position: str = field(
        default="bottom-right", metadata=_meta("Logo corner: bottom-right, bottom-left, top-right, top-left.")
    )
    wm_crf: int = field(default=20, metadata=_meta("x264 quality of the watermarked clip (lower: better)."))
    wm_preset: str = field(default="ultrafast", metadata=_meta("x264 preset (ultrafast keeps a Pi cool)."))
    wm_engine: str = field(default="ffmpeg", metadata=_meta("ffmpeg (default) or moviepy (optional extra)."))
    wm_encoder: str = field(
        default="libx264", metadata=_meta("libx264 or h264_v4l2m2m (falls back to libx264 on failure).")
    )
    wm_at: str = field(
        default="render", metadata=_meta("render (default) or record: burn the logo in while recording.")
    )
    wm_vertical: bool = field(default=False, metadata=_meta("Also make a 9:16 vertical crop for phones."))
    wm_progressive: bool = field(
        default=True,
        metadata=_meta(
            "Watermark the window while its post-roll records, so the highlight is ready about a second "
            "after it (ffmpeg engine, libx264, no vertical crop); false: one pass after the post-roll."
        ),
    )
    wm_ahead: bool = field(
        default=True,
        metadata=_meta(
            "With the progressive render, also watermark each camera's newest segments before any press "
            "(the `gravanois ahead` process, at low priority), so a highlight is ready about a second "
            "after its post-roll whatever the window's length; false: save that CPU."
        ),
    )
    thumb_width: int = field(default=0, metadata=_meta("Thumbnail width in pixels (0: the video's width)."))
    # --- jobs, retries, retention
    max_attempts: int = field(default=3, metadata=_meta("Attempts for each build/render/upload job."))
    retry_intervals: tuple[int, ...] = field(
        default=(10, 30, 90), metadata=_meta("Seconds between retries, comma-separated.")
    )
    failure_ttl_days: float = field(
        default=14.0, metadata=_meta("Days a failed job stays in the failed registry.")
    )
    keep_highlights_days: float = field(
        default=14.0, metadata=_meta("Days finished highlights are kept on the box.")
    )
    keep_highlights_max: int = field(
        default=500, metadata=_meta("Most finished highlights kept on the box (oldest go first).")
    )
    output_min_free_mb: int = field(
        default=500, metadata=_meta("Free-space floor on the data disk; below it the oldest outputs go.")
    )
    # --- upload
    api_base: str = field(default="", metadata=_meta("Backend base URL (empty: uploads off)."))
    api_token: str = field(default="", metadata=_meta("Optional bearer token for the backend."))
    client_id: str = field(default="", metadata=_meta("Backend client id of this venue's owner."))
    venue_id: str = field(default="", metadata=_meta("Backend venue id."))
    device_secret: str = field(default="", metadata=_meta("HMAC secret of this device (never logged)."))
    keep_after_upload: bool = field(
        default=True, metadata=_meta("Keep local files after a confirmed upload (still bounded).")
    )
    upload_concurrency: int = field(default=1, metadata=_meta("Upload workers run in parallel."))
    upload_kbps: int = field(default=0, metadata=_meta("Upload bandwidth limit in kbit/s (0: none)."))
    # --- logs
    log_level: str = field(default="INFO", metadata=_meta("DEBUG, INFO, WARNING or ERROR."))
    log_format: str = field(
        default="auto", metadata=_meta("auto (text on a terminal, JSON lines otherwise), json or text.")
    )
    # --- web app (`gravanois web`: player pages, courtside screen, operator dashboard; docs/web.md)
    web_bind: str = field(
        default="0.0.0.0", metadata=_meta("Address the web app listens on (0.0.0.0: phones on the Wi-Fi).")
    )
    web_port: int = field(default=8080, metadata=_meta("TCP port of the web app."))
    web_public_url: str = field(
        default="",
        metadata=_meta("Base URL QR codes point at, like http://192.168.1.20:8080 (empty: guessed)."),
    )
    web_admin_password: str = field(
        default="", metadata=_meta("Password of the /admin dashboard (empty: the dashboard is off).")
    )
    web_press: bool = field(
        default=False, metadata=_meta("Show a replay button on court pages that presses like the real one.")
    )
    web_days: float = field(default=1.0, metadata=_meta("Days of highlights listed on a court page."))

    # ---- derived values
    @property
    def effective_stall_seconds(self) -> float:
        """How long without a new segment before the watchdog restarts ffmpeg."""
        return self.stall_seconds or 3 * self.seg_time + 5

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

    @property
    def upload_enabled(self) -> bool:
        """Uploads run only when the backend and the device credentials are configured."""
        return bool(self.api_base and self.client_id and self.venue_id and self.device_secret)

    def camera(self, camera_id: str) -> Camera:
        """The configured camera with this id, or a SettingsError naming the known ones."""
        for cam in self.cameras:
            if cam.id == camera_id:
                return cam
        known = ", ".join(c.id for c in self.cameras) or "none"
        raise SettingsError(f"unknown camera {camera_id!r}: GN_CAMERAS has {known}")

    def camera_buffer_dir(self, camera_id: str) -> Path:
        """Segment folder of one camera."""
        return self.buffer_dir / camera_id

    def secrets(self) -> list[str]:
        """Values that must never reach a log or a sidecar."""
        return [s for s in (self.device_secret, self.api_token, self.web_admin_password) if s]


def env_name(field_name: str) -> str:
    """The environment variable of a settings field."""
    return ENV_PREFIX + field_name.upper()


def load_settings(
    overrides: dict[str, Any] | None = None, env_file: str | os.PathLike[str] | None = ".env"
) -> Settings:
    """Settings from CLI `overrides` > environment > `.env` file > defaults, validated."""
    file_values: dict[str, str | None] = {}
    if env_file is not None and Path(env_file).is_file():
        file_values = dotenv_values(env_file)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        name = env_name(f.name)
        raw = os.environ.get(name, file_values.get(name))
        if raw is not None and raw.strip() != "":
            values[f.name] = _parse(f, raw)
        elif raw is not None and _optional(f):
            values[f.name] = None
        elif raw is not None and f.default != "":
            # `GN_X=` with nothing after it is a mistake, not a wish for the default: say so rather
            # than silently becoming e.g. the host name (which changes every Redis key of the box).
            raise SettingsError(
                f"{name} is set but empty: give it a value, or remove the line to use the default "
                f"({_default_text(f)})"
            )
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        f = _field(key)
        values[key] = _parse(f, value) if isinstance(value, str) else value
    try:
        settings = Settings(**values)
    except TypeError as exc:  # pragma: no cover - programming error, not operator input
        raise SettingsError(str(exc)) from exc
    validate(settings)
    return settings


def _field(name: str) -> dataclasses.Field[Any]:
    for f in dataclasses.fields(Settings):
        if f.name == name:
            return f
    raise SettingsError(f"unknown setting {name!r}")


def _default_text(f: dataclasses.Field[Any]) -> str:
    """The default of a setting in words, for an error message."""
    if f.name == "device_id":
        return "the host name"
    return next(text for name, text, _ in describe() if name == env_name(f.name)) or "empty"


def _optional(f: dataclasses.Field[Any]) -> bool:
    hint = typing.get_type_hints(Settings)[f.name]
    return isinstance(hint, types.UnionType) and type(None) in hint.__args__


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    """Turn the text of one setting into its typed value, or say what is wrong with it."""
    hint = typing.get_type_hints(Settings)[f.name]
    if isinstance(hint, types.UnionType):
        hint = next(a for a in hint.__args__ if a is not type(None))
    name = env_name(f.name)
    raw = raw.strip()
    try:
        if hint is bool:
            low = raw.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if hint is int:
            return int(raw)
        if hint is float:
            value = float(raw)
            if not math.isfinite(value):  # float() takes nan and inf; no setting means either
                raise ValueError
            return value
        if hint is Path:
            return Path(raw).expanduser()
        if f.name == "retry_intervals":
            return tuple(int(x) for x in raw.split(",") if x.strip())
        if f.name == "cameras":
            return parse_cameras(raw)
        return raw
    except SettingsError:
        raise
    except ValueError:
        kind = {bool: "true or false", int: "a whole number", float: "a finite number"}.get(
            hint, "a valid value"
        )
        if f.name == "retry_intervals":
            kind = "whole seconds separated by commas, like 10,30,90"
        raise SettingsError(f"{name}={raw!r} is not valid: set it to {kind}") from None


def parse_cameras(raw: str) -> tuple[Camera, ...]:
    """Cameras from JSON: a mapping id → source (or → {source, mode}), or a list of objects with an id."""
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
        unknown = set(item) - {"id", "source", "mode"}
        if unknown:
            raise SettingsError(f"GN_CAMERAS: unknown key(s) {sorted(unknown)}; use id, source and mode")
        cams.append(
            Camera(
                id=str(item.get("id", "")),
                source=str(item.get("source", SYNTHETIC_SOURCE)),
                mode=str(item.get("mode", "")),
            )
        )
    return tuple(cams)


def validate(s: Settings) -> None:
    """Check cross-field rules; raise SettingsError with one clear line for the first problem."""
    _check(
        bool(s.device_id) and re.fullmatch(r"[A-Za-z0-9._-]{1,64}", s.device_id) is not None,
        "device_id",
        "use 1-64 letters, digits, dots, dashes or underscores",
    )
    _check(
        s.redis_url.startswith(("redis://", "rediss://", "unix://")),
        "redis_url",
        "use a URL like redis://127.0.0.1:6379/0",
    )
    for f in dataclasses.fields(Settings):
        value = getattr(s, f.name)
        # Flags hand floats over already parsed (click takes "nan"); a NaN passes every `<` check.
        _check(not isinstance(value, float) or math.isfinite(value), f.name, "it must be a finite number")
    # Each bound is checked on its own setting before the rules that combine them, so that an
    # out-of-range value is blamed on itself, not on GN_BUFFER_SECONDS.
    _check(
        0 < s.seg_time <= MAX_SEG_TIME,
        "seg_time",
        f"it must be more than 0 and at most {MAX_SEG_TIME:g} seconds",
    )
    for side in ("pre_seconds", "post_seconds"):
        _check(
            0 <= getattr(s, side) <= MAX_SIDE_SECONDS,
            side,
            f"it must be from 0 to {MAX_SIDE_SECONDS:g} seconds",
        )
    _check(s.pre_seconds + s.post_seconds > 0, "post_seconds", "pre + post must be more than 0 seconds")
    margin = buffer_margin(s)
    _check(
        s.buffer_seconds >= s.pre_seconds + s.post_seconds + margin,
        "buffer_seconds",
        f"it must be at least pre + post + {margin:g} s margin = {s.pre_seconds + s.post_seconds + margin:g}",
    )
    _check(s.stall_seconds >= 0, "stall_seconds", "it cannot be negative (0 means automatic)")
    _check(s.restart_backoff_max > 0, "restart_backoff_max", "it must be more than 0 seconds")
    _check(s.rtsp_timeout_seconds > 0, "rtsp_timeout_seconds", "it must be more than 0 seconds")
    _check(s.cooldown_seconds >= 0, "cooldown_seconds", "it cannot be negative")
    _check(s.record_mode in RECORD_MODES, "record_mode", f"use one of {', '.join(RECORD_MODES)}")
    _check(s.encoder in ENCODERS, "encoder", f"use one of {', '.join(ENCODERS)}")
    _check(s.rtsp_transport in ("tcp", "udp"), "rtsp_transport", "use tcp or udp")
    _check(bool(s.cameras), "cameras", "configure at least one camera")
    seen: set[str] = set()
    for cam in s.cameras:
        _check(
            is_camera_id(cam.id),
            "cameras",
            f"camera id {cam.id!r} must be 1-32 letters, digits, dashes or underscores",
        )
        _check(cam.id not in seen, "cameras", f"camera id {cam.id!r} appears twice")
        _check(
            cam.mode in ("", *RECORD_MODES),
            "cameras",
            f"camera {cam.id!r} mode must be one of {', '.join(RECORD_MODES)}",
        )
        _check(bool(cam.source), "cameras", f"camera {cam.id!r} needs a source")
        seen.add(cam.id)
    try:
        ZoneInfo(s.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(
            f"{env_name('timezone')}={s.timezone!r} is not a known time zone: "
            "use an IANA name like America/Sao_Paulo"
        ) from None
    if s.open_hours:
        try:
            parse_open_hours(s.open_hours)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
    _check(0 < s.wm_rel_width <= 1, "wm_rel_width", "use a fraction between 0 and 1, like 0.2")
    _check(0 <= s.wm_opacity <= 1, "wm_opacity", "use a value between 0 and 1, like 0.6")
    _check(s.wm_margin >= 0, "wm_margin", "it cannot be negative")
    _check(s.wm_position in WM_POSITIONS, "wm_position", f"use one of {', '.join(WM_POSITIONS)}")
    _check(0 <= s.wm_crf <= 51, "wm_crf", "use a value from 0 to 51, like 20")
    _check(s.wm_preset in X264_PRESETS, "wm_preset", f"use one of {', '.join(X264_PRESETS)}")
    _check(s.wm_engine in WM_ENGINES, "wm_engine", f"use one of {', '.join(WM_ENGINES)}")
    _check(s.wm_encoder in ENCODERS, "wm_encoder", f"use one of {', '.join(ENCODERS)}")
    _check(s.wm_at in WM_AT, "wm_at", f"use one of {', '.join(WM_AT)}")
    _check(s.thumb_width >= 0, "thumb_width", "it cannot be negative (0 means the video's width)")
    _check(s.gpio_debounce_ms >= 0, "gpio_debounce_ms", "it cannot be negative")
    _check(1 <= s.max_attempts <= 20, "max_attempts", "use a value from 1 to 20")
    _check(all(i >= 0 for i in s.retry_intervals), "retry_intervals", "intervals cannot be negative")
    _check(s.failure_ttl_days > 0, "failure_ttl_days", "it must be more than 0 days")
    _check(s.keep_highlights_days > 0, "keep_highlights_days", "it must be more than 0 days")
    _check(s.keep_highlights_max > 0, "keep_highlights_max", "it must be at least 1")
    _check(s.output_min_free_mb >= 0, "output_min_free_mb", "it cannot be negative")
    _check(s.buffer_min_free_mb >= 0, "buffer_min_free_mb", "it cannot be negative")
    _check(s.upload_concurrency >= 1, "upload_concurrency", "it must be at least 1")
    _check(s.upload_kbps >= 0, "upload_kbps", "it cannot be negative (0 means no limit)")
    _check(
        not s.api_base or s.api_base.startswith(("http://", "https://")),
        "api_base",
        "use a URL like https://api.example.com",
    )
    _check(
        s.log_level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR"),
        "log_level",
        "use DEBUG, INFO, WARNING or ERROR",
    )
    _check(s.log_format in LOG_FORMATS, "log_format", f"use one of {', '.join(LOG_FORMATS)}")
    _check(1 <= s.web_port <= 65535, "web_port", "use a TCP port from 1 to 65535, like 8080")
    _check(
        not s.web_public_url or s.web_public_url.startswith(("http://", "https://")),
        "web_public_url",
        "use a URL like http://192.168.1.20:8080",
    )
    _check(s.web_days > 0, "web_days", "it must be more than 0 days")


def buffer_margin(s: Settings) -> float:
    """Extra seconds the buffer keeps beyond pre+post: the wait for the closing segment and a job's start."""
    return max(10.0, 4 * s.seg_time)


def camera_mode(s: Settings, cam: Camera) -> str:
    """A camera's record mode: its own, or the box-wide default."""
    return cam.mode or s.record_mode


def _check(ok: bool, field_name: str, what_to_do: str) -> None:
    if not ok:
        raise SettingsError(f"{env_name(field_name)} is not valid: {what_to_do}")


def describe() -> list[tuple[str, str, str]]:
    """(variable, default as text, meaning) for every setting, in declaration order."""
    rows = []
    defaults = Settings(device_id="<hostname>")
    for f in dataclasses.fields(Settings):
        value = getattr(defaults, f.name)
        if f.name == "cameras":
            text = json.dumps({c.id: c.source for c in value})
        elif f.name == "retry_intervals":
            text = ",".join(str(v) for v in value)
        elif f.name == "wm_logo":
            text = "assets/logo.png"
        elif isinstance(value, bool):
            text = str(value).lower()
        elif value is None:
            text = ""
        else:
            text = str(value)
        rows.append((env_name(f.name), text, f.metadata.get("help", "")))
    return rows


def to_env(s: Settings) -> dict[str, str]:
    """The settings as GN_* environment variables (to hand to child processes)."""
    env = {}
    for f in dataclasses.fields(Settings):
        value = getattr(s, f.name)
        if value is None:
            text = ""
        elif f.name == "cameras":
            text = json.dumps([{"id": c.id, "source": c.source, "mode": c.mode} for c in value])
        elif f.name == "retry_intervals":
            text = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        env[env_name(f.name)] = text
    return env
