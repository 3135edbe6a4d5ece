#!/usr/bin/env python3
"""CPU seconds per recorded second: `gravanois recorder` vs the same ffmpeg command run bare.

For copy and encode mode, a 720p30 H.264+AAC "camera" (a file played in real time, looped) is recorded
for --seconds by (a) the bare ffmpeg command line the recorder builds (recorder/presets.py) and (b) the
real recorder process (Python loop + its ffmpeg + keyframe probe + Redis). CPU is user+system time of
the finished process tree (getrusage of waited-for children). Prints a table with the ratio
recorder / bare, i.e. the Python overhead. Needs ffmpeg and redis-server; takes about 2-3 minutes.

    bench/recorder_cpu [--seconds 25] [--size 1280x720] [--fps 30]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
if sys.prefix == sys.base_prefix and VENV_PYTHON.exists():
    # Run with the project's venv (the README's setup), which has the recorder's dependencies.
    os.execv(VENV_PYTHON, [str(VENV_PYTHON), __file__, *sys.argv[1:]])
sys.path.insert(0, str(REPO))

from recorder import presets  # noqa: E402
from recorder.segmenter import scan  # noqa: E402


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_source(path: Path, size: str, fps: int) -> None:
    """20 s of 720p30 H.264 (1 s GOP) + AAC: the camera, played in a loop in real time."""
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration=20",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=20",
         "-c:v", "libx264", "-preset", "ultrafast", "-g", str(fps), "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "64k", str(path)],
        check=True,
        timeout=300,
    )  # fmt: skip


def bare(source: Path, mode: str, seconds: float, out: Path) -> tuple[float, float]:
    """The recorder's own ffmpeg command, no Python around it: (recorded s, CPU s)."""
    out.mkdir(parents=True)
    args = presets.record_args(str(source), mode, "libx264", 1.0, presets.part_pattern(out, "bare"))
    before = children_cpu()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    time.sleep(seconds)
    proc.send_signal(signal.SIGINT)
    listing, _ = proc.communicate(timeout=30)
    cpu = children_cpu() - before
    recorded = 0.0
    for line in listing.decode().splitlines():
        _, start, end = line.rsplit(",", 2)
        recorded += float(end) - float(start)
    return recorded, cpu


def recorder(source: Path, mode: str, seconds: float, base: Path, redis_url: str) -> tuple[float, float]:
    """`gravanois recorder` on the same camera: (recorded s, CPU s of Python + ffmpeg + probes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GN_")}
    env.update(
        GN_DEVICE_ID="bench",
        GN_REDIS_URL=redis_url,
        GN_BUFFER_DIR=str(base / "buffer"),
        GN_DATA_DIR=str(base / "data"),
        GN_CAMERAS=json.dumps({"bench": str(source)}),
        GN_LOG_FORMAT="json",
        PYTHONPATH=str(REPO),
    )
    args = [sys.executable, "-m", "common.cli", "--env-file", os.devnull, "recorder", "--camera", "bench"]
    before = children_cpu()
    proc = subprocess.Popen(
        [*args, "--mode", mode], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO
    )
    time.sleep(seconds)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    cpu = children_cpu() - before
    recorded = sum(s.duration for s in scan(base / "buffer" / "bench"))
    return recorded, cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=25.0, help="wall seconds per run (default 25)")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--fps", type=int, default=30)
    opts = parser.parse_args()
    for tool in ("ffmpeg", "redis-server"):
        if shutil.which(tool) is None:
            sys.exit(f"error: {tool} is not installed")
    with tempfile.TemporaryDirectory(prefix="gn-bench-") as tmp:
        root = Path(tmp)
        source = root / "camera.mp4"
        make_source(source, opts.size, opts.fps)
        port = free_port()
        redis = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", tmp],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(0.5)
        rows = []
        try:
            for mode in ("copy", "encode"):
                b_rec, b_cpu = bare(source, mode, opts.seconds, root / f"bare-{mode}")
                r_rec, r_cpu = recorder(
                    source, mode, opts.seconds, root / f"rec-{mode}", f"redis://127.0.0.1:{port}/0"
                )
                b_rate, r_rate = b_cpu / max(b_rec, 1e-9), r_cpu / max(r_rec, 1e-9)
                rows.append((mode, "bare ffmpeg", b_rec, b_cpu, b_rate, 1.0))
                rows.append((mode, "gravanois recorder", r_rec, r_cpu, r_rate, r_rate / b_rate))
        finally:
            redis.terminate()
            redis.wait()
    print(f"{opts.size}@{opts.fps} H.264+AAC camera, {opts.seconds:g} s per run, {os.cpu_count()} CPUs")
    print(f"{'mode':<7} {'runner':<19} {'recorded_s':>10} {'cpu_s':>7} {'cpu_s/rec_s':>11} {'ratio':>6}")
    for mode, who, rec, cpu, rate, ratio in rows:
        print(f"{mode:<7} {who:<19} {rec:>10.1f} {cpu:>7.2f} {rate:>11.4f} {ratio:>6.2f}")


if __name__ == "__main__":
    main()
