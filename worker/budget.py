"""The render budget, measured: what watermarking each camera's own stream costs this box, and the
decision (common/budget.py) made from it, kept in Redis for status, the dashboard, builds and renders.

The ahead encoder's process (`gravanois ahead`, at low priority) keeps it: at its start and whenever the
cameras, their streams or the watermark change (the measurement's `key`), it encodes the newest few
seconds of each camera's segments through every encoder and size it could use, reads the CPU the ffmpeg
child spent from its rusage, and decides again. A cached measurement whose key still holds is reused:
a restart does not measure again, but the decision is always made again (the CPU, the reserve or a
forced path may have changed).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import redis

from common import budget, keys, proc
from common.budget import Box, RenderPath, Size, VideoEncoder
from common.ffmpeg import FFmpegError, base_args, tail
from common.log import event, get_logger
from common.segments import Segment, SegmentIndex, runs
from common.settings import Settings
from common.timeutil import now
from common.watermark import Watermark, input_args, outputs
from worker import encoders, recipe
from worker.aheadcache import BATCH_SECONDS
from worker.encoders import Stream, stream_of

log = get_logger(__name__)

# Seconds of a camera's newest segments each measurement encodes (one ahead batch: its ffmpeg start-up
# counts as it does there), and how many times: the dearest run is kept (one encode's CPU time varies
# by a fifth between runs on an idle box, and a busy box spends more: a low estimate would give a
# camera a path the box cannot keep up with, and the batches' correction would take it back later).
MEASURE_SECONDS = BATCH_SECONDS
MEASURE_RUNS = 3
# The measurement's ffmpeg runs at this niceness (builds and renders come first).
MEASURE_NICE = 10
MEASURE_TIMEOUT = 120.0
# How often the ahead process looks whether the measurement's key still holds (an ffprobe per camera).
RECHECK_SECONDS = 60.0
# How soon it tries again when a camera had no segments yet, or the measurement failed.
RETRY_SECONDS = 5.0
# Bumped when what a measurement encodes changes: older cached costs are then measured again.
METHOD = 4
# The ahead encoder's batches, measured as they are encoded, correct the measurement: a busy box spends
# more CPU on the same encode than an idle one (shared caches and cores). Each camera's correction is an
# average of its batches' ratio to the measured cost (this weight for the newest), kept between these
# bounds (a measurement is never trusted less than this, nor corrected up more).
OBSERVED_WEIGHT = 0.2
CORRECTION_BOUNDS = (1.0, 3.0)


def box_cpus() -> float:
    """The CPU this process may use, in cores: a cgroup's CPU quota when one holds it (a container, the
    harness's emulated Pi), else the CPUs it may run on."""
    cpus = float(len(os.sched_getaffinity(0)))
    quota = cgroup_quota()
    return min(cpus, quota) if quota is not None else cpus


def cgroup_quota(proc_root: Path = Path("/proc/self"), fs: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The tightest CPU quota (cores) of this process's cgroup and its parents, v1 or v2; None if none."""
    found: list[float] = []
    try:
        lines = (proc_root / "cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            base = fs / controllers if (fs / controllers).is_dir() else fs / "cpu"  # "cpu,cpuacct"
            found += _quotas_v1(base, path)
        elif controllers == "":
            found += _quotas_v2(fs, path)
    return min(found) if found else None


def _parents(base: Path, path: str) -> list[Path]:
    parts = [p for p in path.split("/") if p]
    return [base.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]


def _quotas_v1(base: Path, path: str) -> list[float]:
    out = []
    for d in _parents(base, path):
        try:
            quota = int((d / "cpu.cfs_quota_us").read_text())
            period = int((d / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        if quota > 0 and period > 0:
            out.append(quota / period)
    return out


def _quotas_v2(fs: Path, path: str) -> list[float]:
    out = []
    for d in _parents(fs, path):
        try:
            quota, _, period = (d / "cpu.max").read_text().strip().partition(" ")
        except OSError:
            continue
        if quota != "max" and period:
            out.append(int(quota) / int(period))
    return out


def newest_stretch(index: SegmentIndex, seconds: float = MEASURE_SECONDS) -> list[Segment]:
    """The camera's newest closed segments of one recording run holding about `seconds` of video."""
    segs = sorted(index.after(now() - 10 * seconds - 30))
    if not segs:
        return []
    stretch = runs(segs)[-1]
    out: list[Segment] = []
    for seg in reversed(stretch):
        out.insert(0, seg)
        if out[-1].end - out[0].start >= seconds:
            break
    return out


def measure_args(
    sources: list[Path],
    wm: Watermark,
    stream: Stream,
    encoder: VideoEncoder,
    size: Size,
    preset: str,
    crf: int,
) -> list[str]:
    """ffmpeg: the segments through the watermark encoder the box would use, the output thrown away."""
    width, height = encoders.out_size(size, stream.width, stream.height)
    return [
        *base_args(),
        "-i",
        "concat:" + "|".join(str(p) for p in sources),
        *input_args(wm),
        "-filter_complex",
        encoders.graph(wm, stream.rate, stream.width, stream.height, size),
        "-map",
        outputs()[0],
        *encoders.codec_args(encoder, width, height, stream.fps, preset, crf),
        "-an",
        "-f",
        "null",
        "-",
    ]


def cpu_seconds(args: list[str], timeout: float = MEASURE_TIMEOUT, nice: int = MEASURE_NICE) -> float:
    """Run a command at `nice` and return the CPU time (user + system) it spent, from its rusage;
    FFmpegError when it fails or outlasts `timeout`."""
    with tempfile.TemporaryFile() as err:
        child = proc.spawn(["nice", "-n", str(nice), *args], stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                child.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait for it again
                break
            if time.monotonic() > deadline:
                child.kill()
                child.wait()
                raise FFmpegError(f"the measurement timed out after {timeout:g} s")
            time.sleep(0.05)
        if child.returncode != 0:
            err.seek(0)
            raise FFmpegError(f"the measurement failed (exit {child.returncode}): {tail(err.read())}")
    return usage.ru_utime + usage.ru_stime


def candidates(stream: Stream, hardware: bool) -> list[tuple[VideoEncoder, Size]]:
    """The encoders and sizes worth measuring for this stream (the hardware one where it works)."""
    out = [(VideoEncoder.SOFTWARE, size) for size in encoders.sizes_for(stream.height)]
    if hardware:
        for size in encoders.sizes_for(stream.height):
            if encoders.hw_fits(*encoders.out_size(size, stream.width, stream.height), stream.fps):
                out.append((VideoEncoder.HARDWARE, size))
    return out


def measure_camera(
    settings: Settings, wm: Watermark, camera: str, segs: list[Segment], stream: Stream, hardware: bool
) -> dict[str, float]:
    """CPU-s per second of video of each candidate encode of these segments (`cost_key` → cost)."""
    buffer = settings.camera_buffer_dir(camera)
    sources = [buffer / s.name for s in segs]
    seconds = segs[-1].end - segs[0].start
    costs = {}
    for encoder, size in candidates(stream, hardware):
        args = measure_args(sources, wm, stream, encoder, size, settings.wm_preset, settings.wm_crf)
        runs = [cpu_seconds(args) for _ in range(MEASURE_RUNS)]
        costs[budget.cost_key(encoder, size)] = round(max(runs) / seconds, 4)
    return costs


def measurement_key(settings: Settings, wm: Watermark, streams: Mapping[str, Stream], hardware: bool) -> str:
    """What a measurement holds for: the cameras and their streams, the watermark, the encoder settings."""
    stamps = [(str(p), (st := p.stat()).st_size, st.st_mtime_ns) for p in wm.logos]
    text = json.dumps(
        [
            METHOD,
            sorted((cam, s.width, s.height, s.rate) for cam, s in streams.items()),
            stamps,
            [wm.rel_width, wm.opacity, wm.margin, wm.position],
            [settings.wm_preset, settings.wm_crf, hardware],
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def allowed_paths(settings: Settings) -> tuple[RenderPath, ...]:
    """The render paths the render settings switch on (GN_WM_PROGRESSIVE, GN_WM_AHEAD and the rest)."""
    if not recipe.applies(settings):
        return (RenderPath.SINGLE,)
    if not settings.wm_ahead:
        return (RenderPath.PROGRESSIVE, RenderPath.SINGLE)
    return tuple(RenderPath)


def box_of(settings: Settings, cpus: float) -> Box:
    """The decision's view of this box and its settings."""
    return Box(
        cpus=cpus,
        reserve=settings.render_reserve,
        pre_seconds=settings.pre_seconds,
        post_seconds=settings.post_seconds,
        seg_seconds=settings.seg_time,
        batch_seconds=BATCH_SECONDS,
        path=settings.render_path,
        encoder=settings.render_encoder,
        size=settings.render_size,
        paths=allowed_paths(settings),
    )


def decide(
    settings: Settings,
    costs: Mapping[str, Mapping[str, float]],
    cpus: float,
    current: Mapping[str, budget.Option] | None = None,
) -> dict[str, Any]:
    """The published decision from measured costs (camera → cost_key → CPU-s per video second) and the
    options in force (none at a start or a new measurement)."""
    measured = {cam: {budget.parse_cost_key(k): v for k, v in c.items()} for cam, c in costs.items()}
    box = box_of(settings, cpus)
    return budget.summary(box, budget.decide(box, measured, current), current)


def in_force(data: dict[str, Any] | None) -> dict[str, budget.Option]:
    """The options of a published decision (camera → Option; none without one)."""
    cameras = ((data or {}).get("decision") or {}).get("cameras") or {}
    return {
        cam: budget.Option(RenderPath(c["path"]), VideoEncoder(c["encoder"]), Size(c["size"]))
        for cam, c in cameras.items()
    }


def read(conn: redis.Redis, device: str) -> dict[str, Any] | None:
    """The budget kept in Redis (measurement and decision), or None when there is none (yet)."""
    raw = conn.get(keys.budget(device))
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def choice_for(conn: redis.Redis, device: str, camera: str) -> dict[str, Any] | None:
    """A camera's published choice (path, encoder, size, cost, wait), or None when none is published."""
    data = read(conn, device)
    decision = (data or {}).get("decision") or {}
    choice = (decision.get("cameras") or {}).get(camera)
    return choice if isinstance(choice, dict) else None


def option_of(choice: dict[str, Any] | None) -> tuple[VideoEncoder, Size]:
    """A published choice's encoder and size (software at the camera's size without one)."""
    if choice is None:
        return VideoEncoder.SOFTWARE, Size.SOURCE
    return VideoEncoder(choice["encoder"]), Size(choice["size"])


class Keeper:
    """Keeps the box's budget measured and decided (run by the ahead encoder's process)."""

    def __init__(self, settings: Settings, conn: redis.Redis, cpus: float | None = None) -> None:
        self.settings, self.conn = settings, conn
        self.wm = Watermark.from_settings(settings)
        self.cpus = cpus if cpus is not None else box_cpus()
        self.checked = -math.inf
        self.key = ""
        self.published: dict[str, Any] | None = None
        self.correction: dict[str, float] = {}  # camera → observed / measured cost of its option

    def option_of(self, camera: str) -> tuple[VideoEncoder, Size]:
        """The encoder and size this process's last decision gives a camera (software at the camera's
        size before one is made)."""
        option = in_force(self.published).get(camera)
        return (option.encoder, option.size) if option else (VideoEncoder.SOFTWARE, Size.SOURCE)

    def path_of(self, camera: str) -> RenderPath | None:
        """The path this process's last decision gives a camera (None before one is made)."""
        option = in_force(self.published).get(camera)
        return option.path if option else None

    def observe(self, camera: str, cost: float) -> None:
        """A batch of `camera` cost `cost` CPU-s per video second, at the option it was given."""
        measured = ((self.published or {}).get("measured") or {}).get(camera, {})
        key = budget.cost_key(*self.option_of(camera))
        if not measured.get(key):
            return
        ratio = cost / measured[key]
        old = self.correction.get(camera, ratio)
        low, high = CORRECTION_BOUNDS
        self.correction[camera] = min(high, max(low, old + OBSERVED_WEIGHT * (ratio - old)))

    def corrected(self, measured: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
        """The measured costs times each camera's correction (the costs the decision uses)."""
        return {
            cam: {k: round(v * self.correction.get(cam, 1.0), 4) for k, v in c.items()}
            for cam, c in measured.items()
        }

    def tick(self) -> None:
        """Every RECHECK_SECONDS: measure again if the key changed, and publish the decision."""
        t = time.monotonic()
        if t - self.checked < RECHECK_SECONDS:
            return
        self.checked = t
        try:
            done = self.refresh()
        except (FFmpegError, OSError) as exc:
            event(log, "budget_failed", 30, error=str(exc))
            done = None
        if done is None:
            self.checked = t - RECHECK_SECONDS + RETRY_SECONDS

    def refresh(self) -> dict[str, Any] | None:
        """Measure (if the cached measurement no longer holds) and decide; the published budget, or None
        when a camera has no segments to measure yet (then it tries again at the next check)."""
        s = self.settings
        found: dict[str, tuple[list[Segment], Stream]] = {}
        for cam in s.cameras:
            segs = newest_stretch(SegmentIndex(self.conn, s.device_id, cam.id))
            if not segs:
                event(log, "budget_waiting", camera=cam.id, reason="no segments to measure yet")
                return None
            found[cam.id] = (segs, stream_of(s.camera_buffer_dir(cam.id) / segs[-1].name))
        hardware = not encoders.hardware_problem()
        key = measurement_key(s, self.wm, {c: st for c, (_, st) in found.items()}, hardware)
        cached = read(self.conn, s.device_id)
        current = in_force(self.published or cached)  # a restart keeps the decision it finds
        if cached is not None and cached.get("key") == key and isinstance(cached.get("measured"), dict):
            measured = cached["measured"]
            measured_at = cached.get("measured_at")
        else:
            current = {}  # a new measurement decides afresh
            started = time.monotonic()
            measured = {
                cam: measure_camera(s, self.wm, cam, segs, stream, hardware)
                for cam, (segs, stream) in found.items()
            }
            measured_at = now()
            self.correction = {}  # a new measurement: the batches' corrections start again
            event(
                log, "budget_measured", costs=measured, seconds=round(time.monotonic() - started, 1),
                hardware=hardware or encoders.hardware_problem(),
            )  # fmt: skip
        costs = self.corrected(measured)
        try:
            decision = decide(s, costs, self.cpus, current)
        except ValueError as exc:
            event(log, "budget_refused", 40, reason=str(exc))
            decision = {"error": str(exc)}
        data = {
            "key": key,
            "measured_at": measured_at,
            "decided_at": now(),
            "measured": measured,
            "correction": {cam: round(f, 3) for cam, f in self.correction.items()},
            "costs": costs,  # the measured costs, corrected by the batches: what the decision used
            "streams": {c: f"{st.width}x{st.height}@{st.rate}" for c, (_, st) in found.items()},
            "hardware": encoders.hardware_problem() or "available",
            "decision": decision,
        }
        self.conn.set(keys.budget(s.device_id), json.dumps(data))
        before = in_force(self.published)
        self.published = data
        if key != self.key or in_force(data) != before:
            self.key = key
            event(
                log, "budget_decided", cpus=round(self.cpus, 2), cameras=decision.get("cameras"),
                correction=data["correction"],
            )  # fmt: skip
            if decision.get("fits") is False:
                event(
                    log, "budget_over", 30, load=decision.get("load"), cpus=round(self.cpus, 2),
                    reason="the cameras need more CPU than the box has: highlights will come late at a "
                    "busy court; lower the cameras' resolution or frame rate, or use a bigger box",
                )  # fmt: skip
        return data
