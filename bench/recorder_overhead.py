#!/usr/bin/env python3
"""What one idle recorder costs besides its ffmpeg: Redis commands per second and its own CPU.

A real `gravanois recorder` records a 720p30 H.264+AAC RTSP camera (GStreamer's test server on
loopback, copy mode) with a private redis-server and the default settings. Its buffer is on tmpfs, as by
default, and already holds GN_BUFFER_SECONDS (120 s) of segments, so retention works from the first
second as it does all day. After a warm-up, for --seconds: Redis's INFO commandstats (reset at the
start) and the CPU time of the recorder process and of its ffmpeg child, every thread's, in nanoseconds
(/proc/PID/task/*/schedstat: clock ticks of 10 ms are too coarse for a process that costs about a
millisecond a second). Prints one JSON object.

    bench/recorder_overhead.py [--seconds 60] [--windows 1] [--repo PATH] [--also PATH …]

--repo runs the recorder of another checkout (e.g. an older commit unpacked with `git archive`), with
this checkout's test servers. --also runs the recorders of further checkouts at the same time, on the
same camera (each with its own redis-server), measured over the same windows: on a shared machine,
whose load moves every figure by a third from one run to the next, this compares two versions under
the same conditions. With --windows N the measurement is N windows of --seconds in a row; the figures
are then the medians, with each window's in `windows`. One JSON object per recorder.
"""

from __future__ import annotations

import argparse
import json
import os
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

from harness.procfs import cpu_ns  # noqa: E402
from harness.recorder_helpers import children_ffmpeg, prefill_buffer  # noqa: E402
from harness.redis_server import RedisServer  # noqa: E402
from harness.rtsp_server import RtspServer  # noqa: E402

# The recorder's default buffer (GN_BUFFER_DIR) is on tmpfs: the runners write there, as on the Pi.
SCRATCH = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
WARM_UP = 15.0  # connect, probe, keyframe measurement, the buffer filling up to retention


class Run:
    """One checkout's recorder with its own redis-server, on the shared camera."""

    def __init__(self, repo: Path, base: Path, camera_url: str) -> None:
        self.repo = repo
        self.redis = RedisServer(data_dir=base / "redis").start()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GN_")}
        env.update(
            GN_DEVICE_ID="bench",
            GN_DATA_DIR=str(base / "data"),
            GN_BUFFER_DIR=str(base / "buffer"),
            GN_REDIS_URL=self.redis.url,
            GN_CAMERAS=json.dumps([{"id": "cam1", "source": camera_url, "mode": "copy"}]),
            GN_LOG_FORMAT="json",
            PYTHONPATH=str(repo),
        )
        prefill_buffer(base / "buffer" / "cam1")
        cmd = [sys.executable, "-m", "common.cli", "--env-file", "/dev/null", "recorder", "--camera", "cam1"]
        self.log = base / "recorder.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, env=env, cwd=repo, stdout=log, stderr=subprocess.STDOUT)
        self.conn = self.redis.client()
        self.ffmpeg = 0
        self.windows: list[tuple[float, float]] = []  # (recorder, ffmpeg) ms of CPU per second
        self.calls: dict[str, int] = {}

    def find_ffmpeg(self) -> None:
        ffmpeg = children_ffmpeg(self.proc.pid)
        if len(ffmpeg) != 1:
            sys.exit(f"expected one ffmpeg child, found {ffmpeg}: see {self.log}")
        self.ffmpeg = ffmpeg[0]

    def cpu(self) -> tuple[int, int]:
        return cpu_ns(self.proc.pid), cpu_ns(self.ffmpeg)

    def check_same_ffmpeg(self) -> None:
        if children_ffmpeg(self.proc.pid) != [self.ffmpeg]:
            sys.exit(f"ffmpeg was restarted during the measurement ({self.repo}): the figures would mix runs")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.redis.stop()

    def report(self, span: float) -> dict:
        rec = statistics.median(r for r, _ in self.windows)
        ff = statistics.median(f for _, f in self.windows)
        out = {
            "repo": str(self.repo),
            "seconds": round(span, 1),
            "redis_commands_per_s": round(sum(self.calls.values()) / span, 2),
            "redis_calls": self.calls,
            "recorder_cpu_ms_per_s": round(rec, 2),
            "ffmpeg_cpu_ms_per_s": round(ff, 2),
            "recorder_vs_ffmpeg": round(statistics.median(r / f for r, f in self.windows), 3),
        }
        if len(self.windows) > 1:
            out["windows"] = [[round(r, 3), round(f, 2)] for r, f in self.windows]
        return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dir",
        default=SCRATCH,
        help="where buffers and Redis go (default /dev/shm: the recorder buffers on tmpfs by default)",
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--windows", type=int, default=1, help="measured windows of --seconds in a row")
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose recorder runs")
    parser.add_argument(
        "--also", type=Path, action="append", default=[], help="another checkout's recorder, at the same time"
    )
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="gn-overhead-", dir=args.dir))
    camera = RtspServer(gop_seconds=1, fps=30, width=1280, height=720, audio=True).start()
    runs: list[Run] = []
    try:
        for i, repo in enumerate([args.repo, *args.also]):
            runs.append(Run(repo, tmp / str(i), camera.url))
        time.sleep(WARM_UP)
        for run in runs:
            run.find_ffmpeg()
            run.conn.config_resetstat()
        start = time.monotonic()
        for _ in range(args.windows):
            before, t0 = [run.cpu() for run in runs], time.monotonic()
            time.sleep(args.seconds)
            after, t1 = [run.cpu() for run in runs], time.monotonic()
            for run, (rec0, ff0), (rec1, ff1) in zip(runs, before, after, strict=True):
                run.windows.append(((rec1 - rec0) / (t1 - t0) / 1e6, (ff1 - ff0) / (t1 - t0) / 1e6))
        span = time.monotonic() - start
        for run in runs:
            stats = run.conn.info("commandstats")
            # The measurement's own INFO and CONFIG RESETSTAT are not the recorder's.
            run.calls = {
                name.removeprefix("cmdstat_"): value["calls"]
                for name, value in stats.items()
                if not name.startswith(("cmdstat_info", "cmdstat_config"))
            }
            run.check_same_ffmpeg()
    finally:
        for run in runs:
            run.stop()
        camera.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    for run in runs:
        print(json.dumps(run.report(span)))


if __name__ == "__main__":
    main()
