"""The render budget: from what encoding costs this box, which render path each camera can afford.

Pure functions only (no Redis, no ffmpeg): the measurement (worker/budget.py) hands in each camera's
measured cost, in CPU-seconds per second of video, of every encoder and output size it can use; `decide`
returns, per camera, the path with the best expected wait after the post-roll that fits the box:

- ahead: the camera's newest segments are watermarked all the time, in batches (worker/ahead.py). It
  costs the encode's price continuously; a build encodes only what no batch holds: the window's first
  seconds and its last ones (on average half a batch each), the last ones after the post-roll.
- progressive: the build encodes the window while the post-roll records (worker/progressive.py). Nothing
  is spent before a press; the wait is what the post-roll was too short to encode.
- single: one encode of the whole window after the post-roll.

The load of a camera is what its path costs all the time (the ahead encoder) plus what its builds cost,
spread over the presses of a busy court (`PLANNED_PRESS_SECONDS`). The loads of all cameras must fit in
the box's CPU less `reserve` (for recording, the web app and the unforeseen); a combination that does
not is taken only when none does (the least loaded then). At a press, the builds of every camera
pressed at once (the worst case: all of them) share the box with the ahead encoders, which run at nice
10: the kernel gives a nice-10 process about a tenth of a nice-0 one's weight (`NICE10_WEIGHT`), so a
build gets nearly the box while the ahead encoders wait, and they catch up after it. A full-size,
software-encoded highlight is preferred while its expected wait is within `TARGET_WAIT_SECONDS`; a
smaller output or the hardware encoder is chosen only when it brings the wait closer to that, or when
the full size does not fit.

A decision is made again every minute, from costs the ahead encoder's batches correct as they come; the
one in force (`current`) is kept while it still fits and keeps its waits, and gives way to a better one
only when that leaves `SWITCH_HEADROOM` of the box to spare: a camera's change of encoder or size starts
its ahead cache afresh, so the builds after it encode their whole window themselves.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class RenderPath(StrEnum):
    """How a camera's highlights are watermarked."""

    AHEAD = "ahead"
    PROGRESSIVE = "progressive"
    SINGLE = "single"


class VideoEncoder(StrEnum):
    """The H.264 encoder of the watermarked clip."""

    SOFTWARE = "software"  # libx264, CRF
    HARDWARE = "hardware"  # h264_v4l2m2m (a Pi 4), bitrate-controlled


class Size(StrEnum):
    """The watermarked clip's size."""

    SOURCE = "source"  # the camera's own
    P720 = "720p"  # scaled to 720 lines (from a taller camera only)


AUTO = "auto"
# A wait after the post-roll a player accepts without noticing: below it, quality comes first.
TARGET_WAIT_SECONDS = 5.0
# What every path adds after its last encode: the join, the thumbnail, the sidecar, the queue hops.
# A model constant (bench/budget.py measures the real press-to-clip), not a measurement.
FIXED_SECONDS = 1.0
# The presses the box plans for: one on every camera this often (a busy court; the acceptance test in
# the emulated Pi 4 presses both cameras every 30 s). Builds then cost their work over this interval.
PLANNED_PRESS_SECONDS = 30.0
# The weight of a nice-10 process against a nice-0 one (the kernel's sched_prio_to_weight: 110 / 1024).
NICE10_WEIGHT = 110 / 1024
# A decision in force gives way to a better one that still fits only with this fraction of the box's CPU
# to spare beyond the reserve. Without it, in the emulated Pi 4 the batches' corrections moved the costs
# of two 1080p cameras across the line every minute, each change cost a camera its ahead cache, and the
# builds after it waited 10-18 s instead of 3-4.
SWITCH_HEADROOM = 0.10
# The exhaustive search over every camera's options stops being cheap beyond this many combinations;
# then every camera gets the same option.
MAX_COMBINATIONS = 50_000


@dataclass(frozen=True)
class Option:
    """One way to render a camera's highlights."""

    path: RenderPath
    encoder: VideoEncoder
    size: Size

    @property
    def label(self) -> str:
        """Like `ahead/software/source`."""
        return f"{self.path}/{self.encoder}/{self.size}"

    @classmethod
    def parse(cls, label: str) -> Option:
        """`label` read back; ValueError for anything else."""
        path, encoder, size = label.split("/")
        return cls(RenderPath(path), VideoEncoder(encoder), Size(size))


@dataclass(frozen=True)
class Box:
    """What the decision needs to know about the box and its settings."""

    cpus: float  # CPU the box has, in cores (os.cpu_count, or a cgroup quota)
    reserve: float  # fraction of it kept for recording, builds and the web app
    pre_seconds: float
    post_seconds: float
    seg_seconds: float  # one segment's length
    batch_seconds: float = 4.0  # the ahead encoder's batch (worker/ahead.py BATCH_SECONDS)
    path: str = AUTO  # a RenderPath to force one, else AUTO
    paths: tuple[RenderPath, ...] = tuple(RenderPath)  # the paths the render settings switch on
    encoder: str = AUTO  # an VideoEncoder to force one, else AUTO
    size: str = AUTO  # a Size to force one, else AUTO


@dataclass(frozen=True)
class Choice:
    """One camera's decision: its option, what it costs all the time, and the expected wait."""

    camera: str
    option: Option
    cost: float  # CPU-s per second of video of this option's encode (measured)
    continuous: float  # cores it takes all the time (the ahead encoder), 0 otherwise
    load: float  # cores it takes on average: `continuous` and its builds at the planned presses
    wait: float  # expected seconds from the end of the post-roll to the highlight

    def as_dict(self) -> dict[str, Any]:
        """For the published decision (JSON)."""
        return {
            "path": str(self.option.path),
            "encoder": str(self.option.encoder),
            "size": str(self.option.size),
            "cost": round(self.cost, 4),
            "continuous": round(self.continuous, 4),
            "load": round(self.load, 4),
            "wait": round(self.wait, 2),
        }


# Measured costs of one camera: (encoder, size) → CPU-s per second of video. An (encoder, size) that is
# missing cannot be used on this camera (no hardware encoder, or a camera no taller than 720 lines).
Costs = Mapping[tuple[VideoEncoder, Size], float]


def cost_key(encoder: VideoEncoder, size: Size) -> str:
    """The text an (encoder, size) cost is stored under, like `software/source`."""
    return f"{encoder}/{size}"


def parse_cost_key(text: str) -> tuple[VideoEncoder, Size]:
    """`cost_key` read back; ValueError for anything else."""
    encoder, _, size = text.partition("/")
    return VideoEncoder(encoder), Size(size)


def options(box: Box, costs: Costs) -> list[Option]:
    """The options a camera with these measured costs may take under the box's forced settings."""
    out = []
    for path, (encoder, size) in itertools.product(RenderPath, costs):
        if path not in box.paths or (box.path != AUTO and path != box.path):
            continue
        if box.encoder != AUTO and encoder != box.encoder:
            continue
        if box.size != AUTO and size != box.size:
            continue
        out.append(Option(path, encoder, size))
    return out


def build_seconds(box: Box, option: Option) -> float:
    """Seconds of video a build of `option` encodes itself (the ahead path: what no batch holds)."""
    if option.path is RenderPath.AHEAD:
        return min(box.batch_seconds + box.seg_seconds, box.pre_seconds + box.post_seconds)
    return box.pre_seconds + box.post_seconds


def load_of(box: Box, option: Option, cost: float) -> float:
    """The cores a camera with `option` takes on average at the planned presses."""
    continuous = cost if option.path is RenderPath.AHEAD else 0.0
    return continuous + build_seconds(box, option) * cost / PLANNED_PRESS_SECONDS


def wait_seconds(box: Box, option: Option, cost: float, share: float) -> float:
    """Expected wait after the post-roll for `option`, its encode costing `cost` CPU-s per video second
    and running on `share` cores at the moment of a press."""
    if share <= 0:
        return math.inf
    window = box.pre_seconds + box.post_seconds
    if option.path is RenderPath.AHEAD:
        # The segments since the ahead encoder's last batch (half a batch on average) and the last one.
        work = (min(box.batch_seconds, window) / 2 + box.seg_seconds) * cost
    elif option.path is RenderPath.PROGRESSIVE:
        # The pieces are encoded as the segments close; what the post-roll leaves undone, plus the last
        # segment (it closes at the end of the post-roll), is encoded after it.
        behind = max(0.0, window * cost - box.post_seconds * share)
        work = behind + box.seg_seconds * cost
    else:
        work = window * cost
    return FIXED_SECONDS + work / share


def usable(box: Box) -> float:
    """The cores the cameras' loads may take: the box's less its reserve."""
    return box.cpus * (1.0 - box.reserve)


def evaluate(box: Box, picks: Sequence[tuple[str, Option, float]]) -> list[Choice]:
    """The choices of a combination (camera, option, cost)."""
    continuous = [cost if option.path is RenderPath.AHEAD else 0.0 for _, option, cost in picks]
    # Every camera's build at once, each at nice 0, against the ahead encoders at nice 10.
    share = box.cpus / (len(picks) + NICE10_WEIGHT * sum(1 for c in continuous if c > 0))
    return [
        Choice(camera, option, cost, cont, load_of(box, option, cost), wait_seconds(box, option, cost, share))
        for (camera, option, cost), cont in zip(picks, continuous, strict=True)
    ]


def fits(box: Box, choices: Sequence[Choice]) -> bool:
    """True when the cameras' loads together leave the box its reserve."""
    return sum(c.load for c in choices) <= usable(box)


def _rank(box: Box, choices: list[Choice]) -> tuple[float, ...]:
    """Lower is better: fitting the box (else the least load), then the cameras over the target wait and
    their worst wait, then quality (full size, software), then the load (a wait within the target is
    not noticed: the CPU is better left to the box), then the worst and total wait."""
    late = [c for c in choices if c.wait > TARGET_WAIT_SECONDS]
    load = sum(c.load for c in choices)
    return (
        0.0 if fits(box, choices) else load,
        len(late),
        max((c.wait for c in late), default=0.0),
        sum(c.option.size is not Size.SOURCE for c in choices),
        sum(c.option.encoder is not VideoEncoder.SOFTWARE for c in choices),
        load,
        max(c.wait for c in choices),
        sum(c.wait for c in choices),
    )


def decide(
    box: Box, measured: Mapping[str, Costs], current: Mapping[str, Option] | None = None
) -> list[Choice]:
    """Per camera (in the order given), the option with the best expected wait that fits the box (the
    least loaded when none fits: the box works on, late, rather than not at all); the `current` options,
    when every camera has one it may still take, while they fit and keep their waits (`kept`).

    ValueError with one sentence when no option is left (a forced path or encoder that none of the
    cameras can use, or a camera without any measured cost)."""
    cameras = list(measured)
    if not cameras:
        return []
    per_camera = []
    for camera in cameras:
        opts = [(camera, o, measured[camera][(o.encoder, o.size)]) for o in options(box, measured[camera])]
        if not opts:
            raise ValueError(f"camera {camera} has no render option the settings allow")
        per_camera.append(opts)
    if math.prod(len(o) for o in per_camera) <= MAX_COMBINATIONS:
        combos: Any = itertools.product(*per_camera)
    else:
        shared = [o for _, o, _ in per_camera[0] if all(any(p[1] == o for p in opts) for opts in per_camera)]
        combos = ([next(p for p in opts if p[1] == o) for opts in per_camera] for o in shared)
    candidates = [evaluate(box, list(combo)) for combo in combos]
    if not candidates:
        raise ValueError("the cameras have no render option in common: set GN_RENDER_PATH, GN_RENDER_SIZE")
    best = min(candidates, key=lambda choices: _rank(box, choices))
    held = next(
        (c for c in candidates if current and [x.option for x in c] == [current.get(x.camera) for x in c]),
        None,
    )
    return held if held is not None and kept(box, held, best) else best


def kept(box: Box, held: list[Choice], best: list[Choice]) -> bool:
    """Whether the options in force stay rather than give way to `best`: they still fit, their cameras
    wait no longer over the target than best's, and best would not leave SWITCH_HEADROOM to spare."""
    if not fits(box, held):
        return False
    if _rank(box, best)[1:3] < _rank(box, held)[1:3]:
        return False
    return sum(c.load for c in best) > usable(box) - SWITCH_HEADROOM * box.cpus


def summary(
    box: Box, choices: Sequence[Choice], current: Mapping[str, Option] | None = None
) -> dict[str, Any]:
    """The decision as published (JSON): the box's figures, each camera's choice and the options that were
    in force when it was made (`held_from`, camera → `Option.label`: with the costs, what `decide` needs
    to make it again)."""
    return {
        "box": asdict(box),
        "held_from": {cam: o.label for cam, o in (current or {}).items()},
        "continuous": round(sum(c.continuous for c in choices), 4),
        "load": round(sum(c.load for c in choices), 4),
        "fits": fits(box, choices),
        "cameras": {c.camera: c.as_dict() for c in choices},
    }
