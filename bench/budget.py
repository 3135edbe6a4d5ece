#!/usr/bin/env python3
"""What each render path costs per camera, and what a player waits, here and in emulated Pi budgets.

Part 1, CPU seconds per second of camera video (each command's own CPU, from its rusage: a busy machine
makes it slower, not dearer), at each `--sizes` (default 1280x720 and 1920x1080, 30 fps), on `--seconds`
of a synthetic camera cut into 1 s MPEG-TS segments as the recorder cuts it. The rows run interleaved
(their order alternates from round to round) and each is divided by the baseline of the same round:

- baseline: a plain ffmpeg re-encode of those segments (libx264 ultrafast, CRF 20, no logo);
- recorder: the recorder's ffmpeg work, a stream copy of the same segments into 1 s segments (from
  files, not from RTSP: bench/recorder_cpu.py measures the real recorder against a live camera);
- ahead: the ahead encoder's batch (worker.progressive's Recipe over 8 one-second segments, the logo);
- progressive: the build's pieces, one ffmpeg run per closed segment (the same recipe);
- single: the single pass over the raw clip (worker.engines, the logo, MP4);
- ahead 720p / measure: the budget's own measurement command (worker.budget), full size and 720p.

Part 2, press-to-clip per path (bench/press_to_clip.py, one camera, a 50 s window): here, then with the
whole of it (Redis, worker, ahead encoder, segment generator) inside the emulated Pi 4 and Pi 5 CPU
budgets (harness/cpubudget.py; an emulation: a cgroup CPU quota, not a Pi).

Part 3, the budget's decision for two cameras of each size inside each budget (common.budget, from the
costs of part 1): the path, encoder and size per camera and the wait it expects. A model's figure.

    .venv/bin/python bench/budget.py [--sizes 1280x720,1920x1080] [--fps 30] [--seconds 8] [--rounds 3]
                                     [--press-to-clip] [--budgets pi4,pi5]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from deploy.checkout import run_in_venv  # noqa: E402

run_in_venv(__file__)  # the project's venv (the README's setup) has the dependencies

from common import budget as model  # noqa: E402
from common.budget import Size, VideoEncoder  # noqa: E402
from common.ffmpeg import base_args, run  # noqa: E402
from common.segments import Segment  # noqa: E402
from common.settings import Settings, load_settings  # noqa: E402
from common.watermark import Watermark  # noqa: E402
from harness import cpubudget  # noqa: E402
from harness.media import segment_stream  # noqa: E402
from worker import budget, encoders, engines, recipe  # noqa: E402
from worker.build import concat_args, concat_list  # noqa: E402

ROWS = ("baseline", "recorder", "ahead", "progressive", "single", "measure", "measure 720p")


def cpu_of(action: Callable[[], object]) -> float:
    """CPU seconds (user + system) the children started by `action` spent."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    action()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


class Camera:
    """One synthetic camera's segments and what each row runs on them."""

    def __init__(self, work: Path, size: str, fps: int, seconds: int) -> None:
        self.work = work / size
        self.size, self.fps = size, fps
        rows = segment_stream(self.work / "buffer" / "cam1", seconds + 1, size, fps)[:seconds]
        self.segments = [Segment(a, b, name, "bench") for name, a, b in rows]
        self.seconds = self.segments[-1].end - self.segments[0].start
        self.settings: Settings = load_settings(
            {"device_id": "bench", "data_dir": self.work / "data", "buffer_dir": self.work / "buffer"},
            env_file=None,
        )
        self.buffer = self.settings.camera_buffer_dir("cam1")
        self.paths = [self.buffer / s.name for s in self.segments]
        self.wm = Watermark.from_settings(self.settings)
        self.recipe = recipe.Recipe.of(self.settings, self.wm, self.paths[0])
        self.stream = encoders.stream_of(self.paths[0])
        self.raw = self.work / "raw.mp4"
        listing = self.work / "raw.ffconcat"
        listing.write_text(concat_list(["concat:" + "|".join(str(p) for p in self.paths)]))
        run(concat_args(listing, self.raw), 600, what="raw clip")

    def out(self, name: str) -> Path:
        return self.work / name

    def row(self, name: str) -> float:
        """CPU seconds per second of video of one row."""
        actions: dict[str, Callable[[], object]] = {
            "baseline": self.baseline,
            "recorder": self.recorder,
            "ahead": lambda: self.recipe.encode(self.segments, self.buffer, self.out("ahead.ts")),
            "progressive": self.pieces,
            "single": self.single,
            "measure": lambda: self.measure(Size.SOURCE),
            "measure 720p": lambda: self.measure(Size.P720),
        }
        return cpu_of(actions[name]) / self.seconds

    def concat(self) -> str:
        return "concat:" + "|".join(str(p) for p in self.paths)

    def baseline(self) -> None:
        codec = ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "20", "-pix_fmt", "yuv420p"]
        run(
            [
                *base_args(),
                "-i",
                self.concat(),
                *codec,
                "-c:a",
                "copy",
                "-f",
                "mpegts",
                str(self.out("b.ts")),
            ],
            600,
        )

    def recorder(self) -> None:
        out = self.out("rec")
        out.mkdir(exist_ok=True)
        segment = ["-f", "segment", "-segment_format", "mpegts", "-segment_time", "1"]
        run(
            [*base_args(), "-i", self.concat(), "-map", "0", "-c", "copy", *segment, str(out / "s%05d.ts")],
            600,
        )

    def pieces(self) -> None:
        for i, seg in enumerate(self.segments):
            self.recipe.encode([seg], self.buffer, self.out(f"p{i:03d}.ts"))

    def single(self) -> None:
        s = self.stream
        job = engines.RenderJob(
            src=self.raw, dst=self.out("single.mp4"), wm=self.wm, width=s.width, height=s.height,
            duration=self.seconds, fps=s.fps, crf=self.settings.wm_crf, preset=self.settings.wm_preset,
        )  # fmt: skip
        engines.FFmpegEngine().render(job)

    def measure(self, size: Size) -> None:
        s = self.settings
        args = budget.measure_args(
            self.paths, self.wm, self.stream, VideoEncoder.SOFTWARE, size, s.wm_preset, s.wm_crf
        )
        run(args, 600, what="measure")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} CPUs here)"


def part1(cameras: list[Camera], rounds: int) -> dict[str, dict[str, list[float]]]:
    results: dict[str, dict[str, list[float]]] = {c.size: {r: [] for r in ROWS} for c in cameras}
    for i in range(rounds):
        for cam in cameras if i % 2 == 0 else cameras[::-1]:
            for name in ROWS if i % 2 == 0 else ROWS[::-1]:
                results[cam.size][name].append(cam.row(name))
        print(f"  round {i + 1}/{rounds} done; {load()}", file=sys.stderr)
    print(f"\nCPU seconds per second of camera video ({rounds} rounds, median; ratio to the baseline of the")
    print(f"same round, median); {load()}")
    print(f"{'row':<14}" + "".join(f"{c.size + ' CPU-s/s':>22}{'/ baseline':>12}" for c in cameras))
    for name in ROWS:
        line = f"{name:<14}"
        for cam in cameras:
            values, base = results[cam.size][name], results[cam.size]["baseline"]
            ratio = statistics.median(v / b for v, b in zip(values, base, strict=True))
            line += f"{statistics.median(values):>22.3f}{ratio:>12.2f}"
        print(line)
    return results


def part2(sizes: list[str], fps: int, budgets: list[str]) -> None:
    script = REPO / "bench" / "press_to_clip.py"
    runs = [(size, None) for size in sizes] + [(sizes[-1], name) for name in budgets]
    for size, name in runs:
        where = "this machine" if name is None else f"the emulated {cpubudget.BUDGETS[name].name} budget"
        print(f"\npress-to-clip, {size}@{fps}, one camera, in {where}; {load()}", flush=True)
        args = [
            sys.executable,
            str(script),
            "--size",
            size,
            "--fps",
            str(fps),
            "--runs",
            "1",
            "--windows",
            "50",
        ]
        if name is None:
            subprocess.run(args, check=False, cwd=REPO)
            continue
        with cpubudget.held(cpubudget.BUDGETS[name].cores, name) as held:
            subprocess.run(args, check=False, cwd=REPO, preexec_fn=held.preexec)
            throttled, seconds = held.throttled()
        print(f"(the quota stopped the box {throttled} times, {seconds:.1f} s in all; {load()})")


def part3(results: dict[str, dict[str, list[float]]], budgets: list[str], reserve: float) -> None:
    print("\nthe budget's decision for two cameras (common.budget, from part 1's measured costs,")
    print(f"reserve {reserve:g}; a model)")
    print(
        f"{'budget':<8}{'cameras':<16}{'camera':<8}{'path':<13}{'encoder':<10}{'size':<8}{'CPU-s/s':>8}{'wait':>8}"
    )
    for name in budgets:
        b = cpubudget.BUDGETS[name]
        box = model.Box(cpus=b.cores, reserve=reserve, pre_seconds=40, post_seconds=10, seg_seconds=1)
        for size, rows in results.items():
            costs = {(VideoEncoder.SOFTWARE, Size.SOURCE): statistics.median(rows["measure"])}
            if size.endswith("1080"):
                costs[(VideoEncoder.SOFTWARE, Size.P720)] = statistics.median(rows["measure 720p"])
            for c in model.decide(box, {"cam1": costs, "cam2": costs}):
                o = c.option
                print(f"{b.name:<8}{'2 x ' + size:<16}{c.camera:<8}{o.path:<13}{o.encoder:<10}{o.size:<8}"
                      f"{c.cost:>8.3f}{c.wait:>7.1f}s")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1280x720,1920x1080")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--press-to-clip", action="store_true", help="also part 2 (several minutes)")
    ap.add_argument("--budgets", default="pi4,pi5")
    args = ap.parse_args()
    budgets = [b for b in args.budgets.split(",") if b]
    if problem := (cpubudget.problem() if args.press_to_clip and budgets else ""):
        sys.exit(f"error: cannot emulate a Pi budget here: {problem}")
    work = Path(tempfile.mkdtemp(prefix="budget-"))
    started = time.monotonic()
    try:
        print(f"generating the cameras' segments ...; {load()}", file=sys.stderr)
        cameras = [Camera(work, size, args.fps, args.seconds) for size in args.sizes.split(",")]
        results = part1(cameras, args.rounds)
        part3(results, budgets, cameras[0].settings.render_reserve)  # the default GN_RENDER_RESERVE
        if args.press_to_clip:
            part2(args.sizes.split(","), args.fps, budgets)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n({time.monotonic() - started:.0f} s in all; {load()})")


if __name__ == "__main__":
    main()
