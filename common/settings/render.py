"""Watermark and render: the logo burnt into a highlight, the encoder that does it, the thumbnail.

The logo files themselves are checked where they are read, at the start of the render worker
(worker/render.py `check_config`): that needs ffprobe, and only the process that renders needs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from assets import default_logo
from common.settings.cameras import ENCODERS
from common.settings.fields import RESTART, Check, Concern, env_name, invalid, setting
from common.watermark import POSITIONS

WM_ENGINES = ("ffmpeg", "moviepy")
WM_AT = ("render", "record")
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
# The render budget's choices (common/budget.py decides among them; `auto`: the box chooses).
RENDER_PATHS = ("auto", "ahead", "progressive", "single")
RENDER_ENCODERS = ("auto", "software", "hardware")
RENDER_SIZES = ("auto", "source", "720p")


def _forced_path_allowed(s: RenderSettings) -> None:
    """A forced render path the other render settings switch off is a contradiction: say which."""
    if s.render_path in ("ahead", "progressive") and not s.wm_progressive:
        raise invalid("render_path", f"{s.render_path} needs {env_name('wm_progressive')}=true")
    if s.render_path == "ahead" and not s.wm_ahead:
        raise invalid("render_path", f"ahead needs {env_name('wm_ahead')}=true")
    if s.render_encoder == "software" and s.wm_encoder != "libx264":
        raise invalid("render_encoder", f"software contradicts {env_name('wm_encoder')}={s.wm_encoder}")


@dataclass(frozen=True)
class RenderSettings(Concern):
    """How a highlight is watermarked (logos, place, encoder) and its thumbnail."""

    title = "Watermark and render"
    cross_checks: ClassVar[tuple[Check, ...]] = (_forced_path_allowed,)

    wm_logo: Path = setting(
        factory=default_logo,
        shown="assets/logo.png",
        help="Watermark logo (PNG with alpha); the default ships with the package.",
    )
    wm_logo2: Path | None = setting(None, "Optional second logo, placed in the opposite corner.")
    wm_rel_width: float = setting(
        0.2, "Logo width as a fraction of the video width.", above=0, at_most=1, remote=RESTART
    )
    wm_opacity: float = setting(0.6, "Logo opacity, 0 to 1.", at_least=0, at_most=1, remote=RESTART)
    wm_margin: int = setting(24, "Logo margin from the edges, in pixels.", at_least=0, remote=RESTART)
    wm_position: str = setting(
        "bottom-right",
        "Logo corner: bottom-right, bottom-left, top-right, top-left.",
        choices=POSITIONS,
        remote=RESTART,
    )
    wm_crf: int = setting(
        20, "x264 quality of the watermarked clip (lower: better).", at_least=0, at_most=51, remote=RESTART
    )
    wm_preset: str = setting(
        "ultrafast", "x264 preset (ultrafast keeps a Pi cool).", choices=X264_PRESETS, remote=RESTART
    )
    wm_engine: str = setting("ffmpeg", "ffmpeg (default) or moviepy (optional extra).", choices=WM_ENGINES)
    wm_encoder: str = setting(
        "libx264", "libx264 or h264_v4l2m2m (falls back to libx264 on failure).", choices=ENCODERS
    )
    wm_at: str = setting(
        "render", "render (default) or record: burn the logo in while recording.", choices=WM_AT
    )
    wm_vertical: bool = setting(False, "Also make a 9:16 vertical crop for phones.", remote=RESTART)
    wm_progressive: bool = setting(
        True,
        "Watermark the window while its post-roll records, so the highlight is ready about a second "
        "after it (ffmpeg engine, libx264, no vertical crop); false: one pass after the post-roll.",
        remote=RESTART,
    )
    wm_ahead: bool = setting(
        True,
        "With the progressive render, also watermark each camera's newest segments before any press "
        "(the `gravanois ahead` process, at low priority), so a highlight is ready about a second "
        "after its post-roll whatever the window's length; false: save that CPU.",
        remote=RESTART,
    )
    render_path: str = setting(
        "auto",
        "auto: the box measures what encoding costs it and picks, per camera, the render path with the "
        "shortest wait it can afford (ahead, progressive, single); or force one of them.",
        choices=RENDER_PATHS,
    )
    render_encoder: str = setting(
        "auto",
        "auto: the budget picks libx264 (software) or, where a probe encode works, h264_v4l2m2m "
        "(hardware, Pi 4); or force one.",
        choices=RENDER_ENCODERS,
    )
    render_size: str = setting(
        "auto",
        "auto: the budget may scale a camera taller than 720 lines to 720p when that is what it can "
        "afford; source: always the camera's size; 720p: always scale.",
        choices=RENDER_SIZES,
    )
    render_reserve: float = setting(
        0.25,
        "Share of the box's CPU the render budget leaves for recording, the web app and the unforeseen "
        "(bursts of presses, a measurement that came out low).",
        at_least=0,
        at_most=0.9,
    )
    thumb_width: int = setting(
        0,
        "Thumbnail width in pixels (0: the video's width).",
        at_least=0,
        zero="the video's width",
        remote=RESTART,
    )
