#!/usr/bin/env python3
"""What one idle recorder costs besides its ffmpeg: Redis commands per second and its own CPU.

A real `gravanois recorder` records a 720p30 H.264+AAC RTSP camera (GStreamer's test server on
loopback, copy mode) with a private redis-server, retention active (GN_BUFFER_SECONDS=20). After a
warm-up, for --seconds: Redis's INFO commandstats (reset at the start) and the CPU time of the recorder
process and of its ffmpeg child, every thread's, in nanoseconds (/proc/PID/task/*/schedstat: clock
ticks of 10 ms are too coarse for a process that costs about a millisecond a second). Prints one JSON
object.

    bench/recorder_overhead.py [--seconds 60] [--repo PATH]

--repo runs the recorder of another checkout (e.g. an older commit unpacked with `git archive`), with
this checkout's test servers.
"""

from __future__ import annotations

import argparse
import json
import os
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

from tests.procfs import cpu_ns  # noqa: E402
from tests.recorder_helpers import children_ffmpeg  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402
from tests.rtsp_server import RtspServer  # noqa: E402

WARM_UP = 15.0  # connect, probe, keyframe measurement, the buffer filling up to retention


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose recorder runs")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="gn-overhead-"))
    redis_server = RedisServer(data_dir=tmp / "redis").start()
    camera = RtspServer(gop_seconds=1, fps=30, width=1280, height=720, audio=True).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GN_")}
    env.update(
        GN_DEVICE_ID="bench",
        GN_DATA_DIR=str(tmp / "data"),
        GN_BUFFER_DIR=str(tmp / "buffer"),
        GN_REDIS_URL=redis_server.url,
        GN_CAMERAS=json.dumps([{"id": "cam1", "source": camera.url, "mode": "copy"}]),
        GN_PRE_SECONDS="5",
        GN_POST_SECONDS="2",
        GN_BUFFER_SECONDS="20",
        GN_LOG_FORMAT="json",
        PYTHONPATH=str(args.repo),
    )
    cmd = [sys.executable, "-m", "common.cli", "--env-file", "/dev/null", "recorder", "--camera", "cam1"]
    with open(tmp / "recorder.log", "wb") as log:
        recorder = subprocess.Popen(cmd, env=env, cwd=args.repo, stdout=log, stderr=subprocess.STDOUT)
    conn = redis_server.client()
    try:
        time.sleep(WARM_UP)
        ffmpeg = children_ffmpeg(recorder.pid)
        if len(ffmpeg) != 1:
            sys.exit(f"expected one ffmpeg child, found {ffmpeg}: see {tmp / 'recorder.log'}")
        conn.config_resetstat()
        rec0, ff0, t0 = cpu_ns(recorder.pid) / 1e9, cpu_ns(ffmpeg[0]) / 1e9, time.monotonic()
        time.sleep(args.seconds)
        rec1, ff1, t1 = cpu_ns(recorder.pid) / 1e9, cpu_ns(ffmpeg[0]) / 1e9, time.monotonic()
        stats = conn.info("commandstats")
        if children_ffmpeg(recorder.pid) != ffmpeg:
            sys.exit("ffmpeg was restarted during the measurement: the figures would mix two runs")
    finally:
        recorder.terminate()
        recorder.wait(30)
        camera.stop()
        redis_server.stop()
    span = t1 - t0
    # The measurement's own INFO and CONFIG RESETSTAT are not the recorder's.
    calls = {
        name.removeprefix("cmdstat_"): value["calls"]
        for name, value in stats.items()
        if not name.startswith(("cmdstat_info", "cmdstat_config"))
    }
    print(
        json.dumps(
            {
                "seconds": round(span, 1),
                "redis_commands_per_s": round(sum(calls.values()) / span, 2),
                "redis_calls": calls,
                "recorder_cpu_ms_per_s": round((rec1 - rec0) / span * 1000, 2),
                "ffmpeg_cpu_ms_per_s": round((ff1 - ff0) / span * 1000, 2),
                "recorder_vs_ffmpeg": round((rec1 - rec0) / (ff1 - ff0), 3) if ff1 > ff0 else None,
            }
        )
    )


if __name__ == "__main__":
    main()
