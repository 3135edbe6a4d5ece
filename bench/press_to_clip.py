#!/usr/bin/env python3
"""Latency from the closing of the t+post segment to the raw clip on disk, for 50, 120 and 300 s windows.

Segments are pre-generated (one continuous H.264+AAC stream, 1 s MPEG-TS segments, as the recorder
writes in copy mode) and indexed in a private redis-server, all but the segment that closes the window.
The real build job code (worker.build.Build: poll the index, select, concat -c copy +faststart, sha256,
ffprobe, sidecar, render enqueue, unpin) waits for it; the clock starts when that segment is indexed
(what the recorder does the moment ffmpeg closes it) and stops when the build returns with the clip
renamed into place. Median of --runs per window. Needs ffmpeg and redis-server.

    bench/press_to_clip.py [--size 1280x720] [--fps 30] [--runs 3] [--windows 50,120,300]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
if sys.prefix == sys.base_prefix and VENV_PYTHON.exists():
    os.execv(VENV_PYTHON, [str(VENV_PYTHON), __file__, *sys.argv[1:]])
sys.path.insert(0, str(REPO))

import redis  # noqa: E402

from common import sidecar  # noqa: E402
from common.journal import Press  # noqa: E402
from common.segments import Segment, SegmentIndex  # noqa: E402
from common.settings import load_settings  # noqa: E402
from worker.build import Build  # noqa: E402

POST = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_segments(out: Path, seconds: int, size: str, fps: int) -> list[tuple[str, float, float]]:
    """One continuous stream cut into 1 s MPEG-TS segments; (name, start, end) relative to the first."""
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
        timeout=1800,
    )  # fmt: skip
    rows = list(csv.reader(listing.read_text().splitlines()))
    t0 = float(rows[0][1])
    return [(r[0], float(r[1]) - t0, float(r[2]) - t0) for r in rows]


def one_run(settings, conn, index: SegmentIndex, segs: list[Segment], window: float, shift: int) -> tuple:
    """Index all but the closing segment, start the build, index it, time until the clip is there."""
    base = segs[0].start
    at = base + window - POST + 0.5 + shift  # the window starts 0.5 s into a segment, like a real press
    press = Press(camera="cam1", at=at, pre=window - POST, post=POST, source="bench")
    b = press.window[1]
    closing = next(i for i, s in enumerate(segs) if s.end >= b)
    index.replace_all(segs[:closing])
    build = Build(settings, conn, press)
    result: dict[str, object] = {}

    def run() -> None:
        result["clip"] = build.run()
        result["t1"] = time.monotonic()

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.5)  # the job is polling, as it would be at t+post
    t0 = time.monotonic()
    index.add(segs[closing])
    thread.join()
    clip = Path(str(result["clip"]))
    size = clip.stat().st_size
    data = sidecar.load(sidecar.path_for(clip))
    clip.unlink()
    sidecar.path_for(clip).unlink()
    return float(result["t1"]) - t0, data["segments"], size, data["meta"]["duration_sec"]


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
        settings = load_settings(
            {
                "device_id": "bench",
                "data_dir": work / "data",
                "buffer_dir": work / "buffer",
                "redis_url": f"redis://127.0.0.1:{port}/0",
                "seg_time": 1,
                "buffer_seconds": max(windows) + 60,
                "log_level": "WARNING",
            },
            env_file=None,
        )
        conn = redis.Redis.from_url(settings.redis_url)
        for _ in range(50):
            try:
                conn.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.1)
        total = int(max(windows)) + args.runs + 5
        print(f"generating {total} s of {args.size}@{args.fps} segments ...", file=sys.stderr)
        t = time.monotonic()
        rows = make_segments(settings.camera_buffer_dir("cam1"), total, args.size, args.fps)
        print(f"  done in {time.monotonic() - t:.0f} s", file=sys.stderr)
        base = time.time() - total - 5
        segs = [Segment(base + s, base + e, n) for n, s, e in rows]
        index = SegmentIndex(conn, settings.device_id, "cam1")
        print(f"{'window_s':>8} {'segments':>8} {'clip_MiB':>8} {'clip_s':>7} {'latency_s':>9} "
              f"{'min-max':>11} {'latency/window':>14}")  # fmt: skip
        for window in windows:
            runs = [one_run(settings, conn, index, segs, window, i) for i in range(args.runs)]
            lat = [r[0] for r in runs]
            med = statistics.median(lat)
            print(
                f"{window:>8.0f} {runs[0][1]:>8} {runs[0][2] / 2**20:>8.1f} {runs[0][3]:>7.1f} {med:>9.3f} "
                f"{min(lat):>5.2f}-{max(lat):<5.2f} {med / window:>14.4f}"
            )
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
