"""The watermark filtergraph: pure functions shared by the render job and the recorder (GN_WM_AT=record).

The logo is sized from the video width. ffmpeg 5.1's `scale` cannot see the main video's width, so
either the caller passes the width (from ffprobe, or the recorder's configured size) and the logo is
scaled to a plain number, or the width is unknown and `scale2ref` sizes the logo from the frames.
Opacity multiplies the logo's alpha (`format=rgba,colorchannelmixer=aa=…`). An optional second logo
goes in the diagonally opposite corner; an optional 9:16 vertical crop for phones gets its own output
(logos sized from the crop's width) from the same decode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

POSITIONS = ("bottom-right", "bottom-left", "top-right", "top-left")
OPPOSITE = {
    "bottom-right": "top-left",
    "top-left": "bottom-right",
    "bottom-left": "top-right",
    "top-right": "bottom-left",
}
# Output pad labels of `filtergraph`: map them with `-map [wm]` / `-map [wmv]`.
OUT = "wm"
OUT_VERTICAL = "wmv"


@dataclass(frozen=True)
class Watermark:
    """What to burn in: logo(s), size relative to the video width, opacity, margin and corner."""

    logo: Path
    logo2: Path | None = None
    rel_width: float = 0.2
    opacity: float = 0.6
    margin: int = 24
    position: str = "bottom-right"

    def __post_init__(self) -> None:
        if self.position not in POSITIONS:
            raise ValueError(f"watermark position {self.position!r}: use one of {', '.join(POSITIONS)}")
        if not 0 < self.rel_width <= 1:
            raise ValueError(f"watermark rel_width {self.rel_width}: use a fraction between 0 and 1")
        if not 0 <= self.opacity <= 1:
            raise ValueError(f"watermark opacity {self.opacity}: use a value between 0 and 1")
        if self.margin < 0:
            raise ValueError("watermark margin cannot be negative")

    @classmethod
    def from_settings(cls, settings: Any) -> Watermark:
        """The watermark of a Settings (or any object with the wm_* fields)."""
        return cls(
            logo=Path(settings.wm_logo),
            logo2=Path(settings.wm_logo2) if settings.wm_logo2 else None,
            rel_width=float(settings.wm_rel_width),
            opacity=float(settings.wm_opacity),
            margin=int(settings.wm_margin),
            position=str(settings.wm_position),
        )

    @property
    def logos(self) -> list[Path]:
        """The logo files, first logo first."""
        return [self.logo] + ([self.logo2] if self.logo2 else [])


def even(x: float) -> int:
    """Round down to an even number ≥ 2 (yuv420p and x264 need even sizes)."""
    return max(2, int(x) // 2 * 2)


def logo_width(video_width: int, rel_width: float) -> int:
    """The logo's width in pixels for a video `video_width` wide."""
    return even(video_width * rel_width)


def vertical_size(width: int, height: int) -> tuple[int, int]:
    """Size of the centred 9:16 crop of a `width`×`height` video (even numbers)."""
    if width * 16 >= height * 9:  # wider than 9:16: keep the height
        return even(height * 9 / 16), even(height)
    return even(width), even(width * 16 / 9)


def overlay_xy(position: str, margin: int) -> tuple[str, str]:
    """overlay's x and y expressions for a corner and a margin in pixels."""
    if position not in POSITIONS:
        raise ValueError(f"watermark position {position!r}: use one of {', '.join(POSITIONS)}")
    vert, horiz = position.split("-")
    x = f"main_w-overlay_w-{margin}" if horiz == "right" else str(margin)
    y = f"main_h-overlay_h-{margin}" if vert == "bottom" else str(margin)
    return x, y


def input_args(wm: Watermark) -> list[str]:
    """The `-i logo [-i logo2]` arguments; place them right after the video input(s)."""
    args: list[str] = []
    for logo in wm.logos:
        args += ["-i", str(logo)]
    return args


def _alpha(opacity: float) -> str:
    """Filters making a logo rgba with its alpha multiplied by `opacity`."""
    if opacity >= 1:
        return "format=rgba"
    return f"format=rgba,colorchannelmixer=aa={opacity:.4g}"


def _crop_vertical(width: int | None, height: int | None) -> str:
    """The crop filter of the centred 9:16 frame (numbers when the size is known)."""
    if width and height:
        cw, ch = vertical_size(width, height)
        return f"crop={cw}:{ch}:{(width - cw) // 2}:{(height - ch) // 2}"
    w = "trunc(min(iw\\,ih*9/16)/2)*2"
    h = "trunc(min(ih\\,iw*16/9)/2)*2"
    return f"crop=w={w}:h={h}:x=(iw-ow)/2:y=(ih-oh)/2"


def _branch(
    chains: list[str],
    wm: Watermark,
    frame: str,
    logos: list[str],
    width: int | None,
    tag: str,
    out: str,
) -> None:
    """Append the chains that burn `logos` into `frame` (width known or measured) ending at `[out]`."""
    current = frame
    corners = [wm.position, OPPOSITE[wm.position]]
    for i, logo in enumerate(logos):
        scaled, ref = f"{tag}l{i}", f"{tag}r{i}"
        if width:
            size = logo_width(width, wm.rel_width)
            chains.append(f"[{logo}]scale={size}:-2,{_alpha(wm.opacity)}[{scaled}]")
            base = current
        else:
            # scale2ref sizes the logo from the frames when nobody told us the width. In its
            # expressions iw/ih are the REFERENCE (video) and main_w/main_a the logo being scaled.
            w = f"trunc(iw*{wm.rel_width:.4g}/2)*2"
            chains.append(f"[{logo}][{current}]scale2ref=w='{w}':h='trunc(ow/main_a/2)*2'[{scaled}s][{ref}]")
            chains.append(f"[{scaled}s]{_alpha(wm.opacity)}[{scaled}]")
            base = ref
        x, y = overlay_xy(corners[i], wm.margin)
        last = i == len(logos) - 1
        label = out if last else f"{tag}o{i}"
        tail = ",format=yuv420p" if last else ""
        chains.append(f"[{base}][{scaled}]overlay=x={x}:y={y}{tail}[{label}]")
        current = label


def filtergraph(
    wm: Watermark,
    width: int | None = None,
    height: int | None = None,
    *,
    video: str = "0:v",
    first_logo_input: int = 1,
    landscape: bool = True,
    vertical: bool = False,
) -> str:
    """The -filter_complex text: `[wm]` is the watermarked video, `[wmv]` its 9:16 crop (if `vertical`).

    `video` is the main video's pad (e.g. "0:v"); the logos are inputs `first_logo_input`,
    `first_logo_input + 1`. Pass the video's `width` (and `height` for the crop) when known.
    """
    if not (landscape or vertical):
        raise ValueError("filtergraph needs at least one output (landscape or vertical)")
    chains: list[str] = []
    logo_pads = [f"{first_logo_input + i}:v" for i in range(len(wm.logos))]
    branches = [("", OUT)] if landscape else []
    if vertical:
        branches.append(("v", OUT_VERTICAL))
    if len(branches) == 2:
        chains.append(f"[{video}]split=2[m0][m1]")
        frames = ["m0", "m1"]
        splits = []
        for i, pad in enumerate(logo_pads):
            chains.append(f"[{pad}]split=2[lg{i}a][lg{i}b]")
            splits.append((f"lg{i}a", f"lg{i}b"))
        logo_sets = [[a for a, _ in splits], [b for _, b in splits]]
    else:
        frames = [video]
        logo_sets = [logo_pads]
    for (tag, out), frame, logos in zip(branches, frames, logo_sets, strict=True):
        branch_width = width
        if tag == "v":
            chains.append(f"[{frame}]{_crop_vertical(width, height)}[vc]")
            frame = "vc"
            branch_width = vertical_size(width, height)[0] if width and height else None
        _branch(chains, wm, frame, logos, branch_width, tag or "w", out)
    return ";".join(chains)


def paced(rate: str | float, graph: Callable[[str], str]) -> str:
    """`graph(video_pad)` behind an `fps` filter at the camera's frame rate (`rate`: "25/1", 29.97 …).

    The output is MP4 at a constant rate. A camera that sends an IDR in slices gives two frames a hair
    apart, which would each take a slot of the constant rate (a frame too many per keyframe, the video
    drifting behind the audio); the `fps` filter keeps one. Frames at the camera's rate pass untouched.
    """
    return f"[0:v]fps={rate}[paced];" + graph("paced")


def outputs(vertical: bool = False, landscape: bool = True) -> list[str]:
    """The `-map` targets `filtergraph` produces, in order."""
    return ([f"[{OUT}]"] if landscape else []) + ([f"[{OUT_VERTICAL}]"] if vertical else [])
