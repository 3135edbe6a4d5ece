#!/usr/bin/env python3
"""What a player waits for: from the closing of the segment covering t+post to the watermarked highlight.

For each window (pre = window - 10 s, post = 10 s) and each render path, one press goes through the real
box: a private redis-server, a real `gravanois worker` (build + render, with its scheduler), segments
indexed as the recorder indexes them (the pre-roll at once, the post-roll at the pace it "records"). The
clock starts when the segment closing t+post is indexed and stops when the final sidecar, the watermarked
clip and its thumbnail are on disk. The three paths run interleaved, each on a fresh device:

- ahead (GN_WM_AHEAD=true, the default): a real `gravanois ahead` had watermarked the pre-roll in
  batches before the press, as it does all the time on the box; the build encodes the rest;
- progressive (GN_WM_AHEAD=false): the build watermarks the whole window while the post-roll records;
- single-pass (GN_WM_PROGRESSIVE=false): one ffmpeg run over the raw clip after t+post.

For the ahead path the pre-roll is indexed at once with wall-clock times that end a little in the
future (0.5 s per second of pre-roll, plus 5 s: the encoder must work through it at twice the speed
the camera records it, at nice 10), the ahead encoder works through it, and the press comes when that
pre-roll has "ended"; the run fails loudly if the encoder was not done by then. The CPU the ahead
encoder spent (its ffmpeg children included) per second of video it cached is printed too:
the price of the ahead path, paid all the time.

A second table times the raw clip's join itself, the concat protocol against the concat demuxer (the
same segments, `-c copy`, interleaved), in wall and CPU seconds. The load average is printed beside.

    bench/press_to_clip.py [--size 1280x720] [--fps 30] [--runs 3] [--windows 50,120,300]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from deploy.checkout import run_in_venv  # noqa: E402

run_in_venv(__file__)  # the project's venv (the README's setup) has the dependencies

import redis  # noqa: E402

from common import sidecar  # noqa: E402
from common.ffmpeg import run  # noqa: E402
from common.journal import PressRecord  # noqa: E402
from common.segments import Segment, SegmentIndex  # noqa: E402
from common.settings import Settings, load_settings, to_env  # noqa: E402
from harness.redis_server import free_port  # noqa: E402
from trigger.press import hand_over  # noqa: E402
from worker import ahead as ahead_mod  # noqa: E402
from worker import aheadcache  # noqa: E402
from worker.build import concat_args, concat_list  # noqa: E402

POST = 10.0
PATHS = ("ahead", "progressive", "single-pass")
# The ahead path: the pre-roll "ends" this long after it is indexed (per second of it, plus a base).
PREFILL_PER_SECOND, PREFILL_BASE = 0.5, 5.0


def make_segments(out: Path, seconds: int, size: str, fps: int) -> list[tuple[str, float, float]]:
    """One continuous stream (H.264 + AAC, 1 s GOP) cut into 1 s MPEG-TS segments, as the recorder cuts
    a camera's stream in copy mode; (name, start, end) relative to the first."""
    out.mkdir(parents=True, exist_ok=True)
    listing = out.parent / "list.csv"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
         "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
         "-g", str(fps), "-keyint_min", str(fps), "-sc_threshold", "0", "-c:a", "aac", "-b:a", "64k",
         "-f", "segment", "-segment_format", "mpegts", "-segment_time", "1",
         "-segment_list", str(listing), "-segment_list_type", "csv", str(out / "seg_%05d.ts")],
        check=True,
        timeout=3600,
    )  # fmt: skip
    rows = list(csv.reader(listing.read_text().splitlines()))
    t0 = float(rows[0][1])
    return [(r[0], float(r[1]) - t0, float(r[2]) - t0) for r in rows]


class Bench:
    """The shared parts: Redis, the segment files, a settings template."""

    def __init__(
        self, work: Path, port: int, rows: list[tuple[str, float, float]], window_max: float
    ) -> None:
        self.work, self.port, self.rows = work, port, rows
        self.window_max = window_max
        self.window = window_max
        self.conn = redis.Redis(port=port)
        self.runs = 0
        self.ahead_cost: dict[float, list[float]] = {}

    def settings(self, path: str) -> Settings:
        """A fresh device (its own queues, index and data dir) for one run on one path."""
        self.runs += 1
        return load_settings(
            {
                "device_id": f"bench{self.runs}",
                "data_dir": self.work / f"data{self.runs}",
                "buffer_dir": self.work / "buffer",
                "redis_url": f"redis://127.0.0.1:{self.port}/0",
                "seg_time": 1,
                "buffer_seconds": self.window_max + 60,
                "cooldown_seconds": 0,
                "log_level": "WARNING",
                "log_format": "json",
                "wm_progressive": path != "single-pass",
                "wm_ahead": path == "ahead",
                "pre_seconds": self.window - POST,
                "post_seconds": POST,
            },
            env_file=None,
        )

    def one_run(self, window: float, path: str) -> float:
        """One press with a live post-roll; seconds from the closing segment to the finished highlight."""
        self.window = window
        s = self.settings(path)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("GN_")}, **to_env(s)}
        worker = self.start(env, "worker", "--queues", "build,render")
        ahead = self.start(env, "ahead") if path == "ahead" else None
        try:
            time.sleep(2.0)  # the worker is up and waiting, as on the box
            pre = window - POST
            # Wall-clock times: the pre-roll ends at `at` (already recorded), the post-roll lies ahead.
            at = time.time() + (PREFILL_PER_SECOND * pre + PREFILL_BASE if ahead else 0.0)
            first = next(i for i, r in enumerate(self.rows) if r[2] >= pre) + 1
            offset = at - self.rows[first - 1][2]
            # One recording run, as the recorder indexes one ffmpeg run's segments.
            run = f"bench-{round(at)}"
            segs = [Segment(offset + a, offset + b, name, run) for name, a, b in self.rows]
            press = PressRecord("cam1", at, pre, POST, source="bench")
            index = SegmentIndex(self.conn, s.device_id, "cam1")
            start = next(i for i, g in enumerate(segs) if g.end > at - pre)
            index.add(*segs[start:first])
            if ahead is not None:
                self.prefill(s, segs[start:first], at)
            hand_over(s, self.conn, press)
            closing = next(i for i, g in enumerate(segs) if g.end >= at + POST)
            for g in segs[first : closing + 1]:
                time.sleep(max(0.0, g.end - time.time()))
                index.add(g)
            t0 = time.monotonic()
            out = s.output_dir / sidecar.path_for(Path(sidecar.clip_name(press))).name
            while True:
                if out.is_file():
                    data = sidecar.load(out)
                    if data.get("status") == "watermarked" and Path(data["thumbnail_path"]).is_file():
                        break
                if time.monotonic() - t0 > 600:
                    raise SystemExit(f"error: no highlight after 600 s ({path}, {window:g} s window)")
                time.sleep(0.01)
            took = time.monotonic() - t0
            used = "ahead" if (data.get("progressive") or {}).get("ahead_pieces") else data.get("render_path")
            if used != path:
                raise SystemExit(f"error: asked for {path}, the box took {used}")
            if ahead is not None:
                self.ahead_cost.setdefault(window, []).append(self.stop_ahead(s, ahead))
            return took
        finally:
            for proc in (ahead, worker):
                if proc is not None and proc.poll() is None:
                    proc.terminate()
                    proc.wait(30)
            shutil.rmtree(s.data_dir, ignore_errors=True)

    def start(self, env: dict[str, str], *command: str) -> subprocess.Popen[bytes]:
        """A `gravanois` process of this checkout with this device's settings."""
        return subprocess.Popen(
            [sys.executable, "-m", "common.cli", "--env-file", "/dev/null", *command],
            env={**env, "PYTHONPATH": str(REPO)},
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def prefill(self, s: Settings, pre_roll: list[Segment], at: float) -> None:
        """Wait until the ahead encoder has cached the pre-roll (all but its last, unfinished batch),
        then until the pre-roll's end; fail when the encoder was not done by then."""
        need = {g.name for g in pre_roll if g.end <= at - ahead_mod.BATCH_SECONDS - 1}
        while need - cached_segments(s):
            if time.time() > at:
                raise SystemExit("error: the ahead encoder had not cached the pre-roll by the press")
            time.sleep(0.1)
        time.sleep(max(0.0, at - time.time()))

    def stop_ahead(self, s: Settings, proc: subprocess.Popen[bytes]) -> float:
        """Stop the ahead encoder; its CPU seconds (ffmpeg children included) per second of video cached."""
        by_name = {name: b - a for name, a, b in self.rows}
        seconds = sum(by_name[n] for n in cached_segments(s))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc.terminate()
        proc.wait(30)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return cpu / seconds

    def join_cost(self, window: float, how: str) -> tuple[float, float]:
        """Wall and CPU seconds of one raw-clip join of a window's segments."""
        buffer = self.work / "buffer" / "cam1"
        paths = [buffer / name for name, a, _b in self.rows if a < window]
        out = self.work / f"join-{how}.mp4"
        listing = self.work / "join.ffconcat"
        # What the build writes: one concat-protocol entry for a run cut from one stream, or (the
        # demuxer's way) one entry per segment file.
        protocol = "concat:" + "|".join(str(p.resolve()) for p in paths)
        listing.write_text(concat_list([protocol] if how == "protocol" else list(paths)))
        args = concat_args(listing, out)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.monotonic()
        run(args, 600, what="join")
        wall = time.monotonic() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        out.unlink()
        return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def cached_segments(s: Settings) -> set[str]:
    """Names of the segments the ahead encoder has cached for cam1."""
    names: set[str] = set()
    for record in aheadcache.ahead_dir(s, "cam1").glob("*/*.json"):
        with contextlib.suppress(OSError, ValueError):
            names.update(json.loads(record.read_text())["segments"])
    return names


def median_range(values: list[float]) -> str:
    return f"{statistics.median(values):7.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--windows", default="50,120,300")
    args = ap.parse_args()
    windows = [float(w) for w in args.windows.split(",")]
    for tool in ("ffmpeg", "redis-server"):
        if shutil.which(tool) is None:
            sys.exit(f"error: {tool} is not installed")
    work = Path(tempfile.mkdtemp(prefix="press_to_clip-"))
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(work)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        total = int(max(windows)) + 15
        print(f"generating {total} s of {args.size}@{args.fps} segments ...", file=sys.stderr)
        rows = make_segments(work / "buffer" / "cam1", total, args.size, args.fps)
        bench = Bench(work, port, rows, max(windows))
        results: dict[tuple[float, str], list[float]] = {}
        joins: dict[tuple[float, str], list[tuple[float, float]]] = {}
        for window in windows:
            for i in range(args.runs):
                for path in PATHS if i % 2 == 0 else PATHS[::-1]:  # interleaved, alternating order
                    took = bench.one_run(window, path)
                    results.setdefault((window, path), []).append(took)
                    print(f"  {window:>4.0f} s window, {path:<11}: {took:.2f} s", file=sys.stderr)
                for how in ("protocol", "demuxer") if i % 2 == 0 else ("demuxer", "protocol"):
                    joins.setdefault((window, how), []).append(bench.join_cost(window, how))
        load = os.getloadavg()
        print(f"\n{args.size}@{args.fps}, post {POST:g} s, {args.runs} runs each; load average "
              f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (2 cores here)")  # fmt: skip
        print("\nseconds from the segment closing t+post to the watermarked clip, thumbnail and sidecar")
        print(f"{'window':>7} {'ahead':>22} {'progressive':>22} {'single-pass':>22} "
              f"{'ahead/single':>13} {'progr./single':>14}")  # fmt: skip
        for window in windows:
            ahead, prog, single = (results[(window, p)] for p in PATHS)
            r_ahead = statistics.median(ahead) / statistics.median(single)
            r_prog = statistics.median(prog) / statistics.median(single)
            print(f"{window:>6.0f}s {median_range(ahead):>22} {median_range(prog):>22} "
                  f"{median_range(single):>22} {r_ahead:>13.3f} {r_prog:>14.3f}")  # fmt: skip
        print("\nthe ahead encoder's price: its CPU seconds (ffmpeg included) per second of video it cached")
        for window in windows:
            print(f"{window:>6.0f}s {median_range(bench.ahead_cost[window]):>22}")
        print("\nraw clip join, -c copy: concat protocol vs concat demuxer (median wall / CPU seconds)")
        print(f"{'window':>7} {'protocol wall':>14} {'demuxer wall':>13} {'protocol CPU':>13} "
              f"{'demuxer CPU':>12} {'CPU ratio':>10}")  # fmt: skip
        for window in windows:
            p, d = joins[(window, "protocol")], joins[(window, "demuxer")]
            pw, dw = statistics.median(x[0] for x in p), statistics.median(x[0] for x in d)
            pc, dc = statistics.median(x[1] for x in p), statistics.median(x[1] for x in d)
            print(f"{window:>6.0f}s {pw:>14.3f} {dw:>13.3f} {pc:>13.3f} {dc:>12.3f} {pc / dc:>10.3f}")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
