#!/usr/bin/env python3
"""CPU of `gravanois recorder` in copy mode against a true `ffmpeg -c copy` of the same RTSP camera.

The camera is GStreamer's RTSP server on loopback (harness/rtsp_server.py): live 720p30 H.264 with AAC
audio by default (`--audio none`: a silent one; not G.711, which a true copy cannot put into MPEG-TS).
Two runners record it in turn, interleaved (baseline, recorder, then recorder, baseline, …) so a change
in the machine's load hits both:

- baseline: `ffmpeg -rtsp_transport tcp -i URL -map 0 -c copy -f segment …` (1 s MPEG-TS segments),
  written here by hand, not taken from the recorder's presets;
- recorder: the real `gravanois recorder` process (Python loop, its ffmpeg, probes, Redis), with the
  default settings; its buffer already holds GN_BUFFER_SECONDS (120 s) of segments, so retention works
  from the start as it does all day.

Both write to tmpfs (`--dir`, default /dev/shm), where the recorder's buffer is by default.

With `--together` each round runs both at once, on the same (shared) camera stream, over the same
window: the machine's moods (other load, CPU frequency), which move a bare ffmpeg's cost by a fifth from
one minute to the next here, then hit both alike, and the ratio of each round's pair is printed too.

Each run is measured over `--seconds` (default 60) after `--warmup` seconds of start-up (connecting,
probing, the keyframe measurement). CPU is counted in nanoseconds, not in 10 ms clock ticks (a recorder
that costs a millisecond a second more than ffmpeg is lost in ticks):

- every thread of the runner and of its live descendants, from /proc/PID/task/TID/schedstat: the
  difference between the end and the start of the window (a thread or process born inside it counts
  from zero);
- children that ended inside the window (an ffprobe, a restarted ffmpeg) through their parent's
  cutime+cstime in /proc/PID/stat, which only counts whole clock ticks; their share before the window
  is taken off. Column `ticks_ms` says how much of a row came this way (0 when nothing ended);
- not counted: a thread that ended inside the window while its process lives on (schedstat forgets
  it). Column `lost` counts such threads, so a row that missed some says so.

Prints one row per run (whole tree, and the runner's own process: for the recorder, its Python), with
the 1-minute load average at its end, then the medians and the ratio recorder / baseline.
Needs ffmpeg, redis-server and the GStreamer RTSP server (`./run.sh test` installs it); about 5 min.

    .venv/bin/python bench/recorder_cpu.py [--seconds 60] [--warmup 10] [--rounds 2] [--together]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from deploy.checkout import run_in_venv  # noqa: E402

run_in_venv(__file__)  # the project's venv (the README's setup) has the dependencies

from harness.procfs import ProcStat, all_procs, thread_ns  # noqa: E402
from harness.recorder_helpers import prefill_buffer  # noqa: E402
from harness.redis_server import RedisServer  # noqa: E402
from harness.rtsp_server import RtspServer  # noqa: E402

# The recorder's default buffer (GN_BUFFER_DIR) is on tmpfs: the runners write there, as on the Pi.
SCRATCH = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


@dataclass(frozen=True)
class Snapshot:
    """CPU so far of a process tree: each thread's nanoseconds, each process's /proc/PID/stat times."""

    root: int
    threads: dict[tuple[int, int], int] = field(default_factory=dict)  # (pid, tid) → ns
    procs: dict[int, ProcStat] = field(default_factory=dict)


def snapshot(root: int) -> Snapshot:
    """`root` and its live descendants, now."""
    procs = all_procs()
    children: dict[int, list[int]] = {}
    for pid, st in procs.items():
        children.setdefault(st.ppid, []).append(pid)
    snap = Snapshot(root)
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            threads = thread_ns(pid)
        except OSError:
            continue  # ended meanwhile: its parent's cutime will have it
        if pid not in procs:
            continue
        snap.procs[pid] = procs[pid]
        snap.threads.update(((pid, tid), ns) for tid, ns in threads.items())
        todo += children.get(pid, [])
    return snap


@dataclass(frozen=True)
class Window:
    """CPU of a tree between two snapshots (see the module's docstring for what is counted)."""

    total_ns: int
    own_ns: int  # the root process's threads alone
    ticks_ns: int  # the part known from ended children's clock ticks
    lost: int  # threads that ended while their process lives on: not counted


def window(a: Snapshot, b: Snapshot) -> Window:
    """What the tree spent from `a` to `b`."""
    threads = own = 0
    for key, ns in b.threads.items():
        spent = ns - a.threads.get(key, 0)
        threads += spent
        own += spent if key[0] == b.root else 0
    # Children reaped in between: their whole CPU landed in the parent's cutime/cstime (ticks) …
    reaped = sum(
        st.children_cpu - (a.procs[p].children_cpu if p in a.procs else 0) for p, st in b.procs.items()
    )
    # … including what they had spent before `a`, which is not this window's.
    reaped -= sum(st.cpu + st.children_cpu for p, st in a.procs.items() if p not in b.procs)
    lost = sum(1 for pid, tid in a.threads if pid in b.procs and (pid, tid) not in b.threads)
    ticks = round(reaped * 1e9)
    return Window(total_ns=threads + ticks, own_ns=own, ticks_ns=ticks, lost=lost)


def baseline_cmd(url: str, out: Path) -> list[str]:
    """A true stream copy of the camera into 1 s MPEG-TS segments: what the recorder is compared with."""
    return [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
        "-rtsp_transport", "tcp", "-i", url,
        "-map", "0", "-c", "copy",
        "-f", "segment", "-segment_format", "mpegts", "-segment_time", "1",
        str(out / "%06d.ts"),
    ]  # fmt: skip


def recorder_cmd(url: str, base: Path, redis_url: str) -> tuple[list[str], dict[str, str]]:
    """`gravanois recorder` on the same camera, in copy mode, with a private Redis and buffer."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GN_")}
    env.update(
        GN_DEVICE_ID="bench",
        GN_REDIS_URL=redis_url,
        GN_BUFFER_DIR=str(base / "buffer"),
        GN_DATA_DIR=str(base / "data"),
        GN_CAMERAS=json.dumps([{"id": "bench", "source": url, "mode": "copy"}]),
        GN_LOG_FORMAT="json",
        PYTHONPATH=str(REPO),
    )
    args = [sys.executable, "-m", "common.cli", "--env-file", os.devnull, "recorder", "--camera", "bench"]
    return args, env


Runner = tuple[list[str], dict[str, str] | None, Path]  # command, environment, log file


def runner(who: str, base: Path, camera_url: str, redis_url: str) -> Runner:
    """The baseline's or the recorder's command, environment and log file, writing under `base`."""
    base.mkdir()
    if who == "baseline":
        return baseline_cmd(camera_url, base), None, base.with_suffix(".log")
    prefill_buffer(base / "buffer" / "bench")
    args, env = recorder_cmd(camera_url, base, redis_url)
    return args, env, base.with_suffix(".log")


def measure(runners: list[Runner], warmup: float, seconds: float) -> list[dict]:
    """Start the runners at once, skip their start-up, measure each tree's CPU over `seconds`, stop them.

    One result per runner; with two, both were measured over the same window.
    """
    procs = []
    for args, env, log in runners:
        with open(log, "wb") as out:
            procs.append(subprocess.Popen(args, env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL))
    try:
        time.sleep(warmup)
        before = [snapshot(proc.pid) for proc in procs]
        t0 = time.monotonic()
        time.sleep(seconds)
        after = [snapshot(proc.pid) for proc in procs]
        wall = time.monotonic() - t0
        alive = [proc.poll() is None for proc in procs]
    finally:
        for proc, (args, _env, _log) in zip(procs, runners, strict=True):
            proc.send_signal(signal.SIGINT if args[0] == "ffmpeg" else signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return [
        {
            "startup": window(Snapshot(proc.pid), a).total_ns / 1e9,
            "window": window(a, b),
            "wall": wall,
            "alive": ok,
            "load1": os.getloadavg()[0],
        }
        for proc, a, b, ok in zip(procs, before, after, alive, strict=True)
    ]


def segments_in(directory: Path, since: float) -> int:
    """How many MPEG-TS files a runner wrote (a runner that records nothing is no baseline).

    Those written before it started (the recorder's prefilled buffer) do not count.
    """
    return sum(1 for p in directory.rglob("*.ts") if p.stat().st_mtime >= since)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dir",
        default=SCRATCH,
        help="where buffers and Redis go (default /dev/shm: the recorder buffers on tmpfs by default)",
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds per run (default 60)")
    parser.add_argument(
        "--warmup", type=float, default=10.0, help="start-up seconds not measured (default 10)"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="baseline+recorder pairs, interleaved (default 2)"
    )
    parser.add_argument(
        "--together",
        action="store_true",
        help="run each round's two runners at once, on the same camera stream, over the same window",
    )
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--audio", choices=("aac", "none"), default="aac")
    opts = parser.parse_args()
    for tool in ("ffmpeg", "redis-server"):
        if shutil.which(tool) is None:
            sys.exit(f"error: {tool} is not installed")
    if not RtspServer.available():
        sys.exit("error: GStreamer's RTSP server is missing: run ./run.sh test once to install it")
    width, height = (int(x) for x in opts.size.split("x"))
    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="gn-bench-", dir=opts.dir) as tmp:
        root = Path(tmp)
        redis = RedisServer(data_dir=root / "redis").start()
        camera = RtspServer(
            gop_seconds=1, fps=opts.fps, width=width, height=height, audio=opts.audio, path="/bench"
        ).start()
        try:
            for r in range(opts.rounds):
                # Alternate the order so neither runner always goes first after a pause (or, together,
                # starts first).
                order = ("baseline", "recorder") if r % 2 == 0 else ("recorder", "baseline")
                groups: list[tuple[str, ...]] = [order] if opts.together else [(who,) for who in order]
                for group in groups:
                    runners = [runner(who, root / f"{who}-{r}", camera.url, redis.url) for who in group]
                    started = time.time()  # after the recorder's buffer was prefilled
                    for who, result in zip(group, measure(runners, opts.warmup, opts.seconds), strict=True):
                        base = root / f"{who}-{r}"
                        result.update(who=who, round=r + 1, segments=segments_in(base, started))
                        if not result["alive"] or result["segments"] < opts.seconds / 2:
                            log = base.with_suffix(".log").read_text(errors="replace")[-1500:]
                            sys.exit(f"error: the {who} run stopped recording:\n{log}")
                        rows.append(result)
        finally:
            camera.stop()
            redis.stop()
    load_after = os.getloadavg()
    print(
        f"{opts.size}@{opts.fps} H.264 + {opts.audio} RTSP camera (GStreamer, loopback), copy mode, "
        f"{opts.seconds:g} s measured after {opts.warmup:g} s start-up, {opts.rounds} "
        f"{'rounds, both runners at once' if opts.together else 'interleaved rounds'}, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"load average before: {' '.join(f'{x:.2f}' for x in load_before)}")
    head = f"{'round':>5} {'runner':<19} {'segments':>8} {'startup_cpu_s':>13} {'cpu_ms/s':>8}"
    print(f"{head} {'own_ms/s':>8} {'ticks_ms':>8} {'lost':>4} {'load1':>6}")
    for row in rows:
        name = "ffmpeg -c copy" if row["who"] == "baseline" else "gravanois recorder"
        w = row["window"]
        print(
            f"{row['round']:>5} {name:<19} {row['segments']:>8} {row['startup']:>13.2f} "
            f"{w.total_ns / 1e6 / row['wall']:>8.2f} {w.own_ns / 1e6 / row['wall']:>8.2f} "
            f"{w.ticks_ns / 1e6:>8.0f} {w.lost:>4} {row['load1']:>6.2f}"
        )
    rates = {
        who: statistics.median(r["window"].total_ns / 1e6 / r["wall"] for r in rows if r["who"] == who)
        for who in ("baseline", "recorder")
    }
    own = statistics.median(r["window"].own_ns / 1e6 / r["wall"] for r in rows if r["who"] == "recorder")
    print(
        f"median cpu_ms/s: ffmpeg -c copy {rates['baseline']:.2f}, "
        f"gravanois recorder {rates['recorder']:.2f} (of which its Python process {own:.2f})"
    )
    print(f"ratio recorder / ffmpeg -c copy: {rates['recorder'] / rates['baseline']:.2f}")
    if opts.together:
        # Each round's two runners shared the window: the ratio of each pair, then their median.
        def rate(n: int, who: str) -> float:
            pair: float = next(
                r["window"].total_ns / r["wall"] for r in rows if (r["round"], r["who"]) == (n, who)
            )
            return pair

        ratios = [rate(n, "recorder") / rate(n, "baseline") for n in range(1, opts.rounds + 1)]
        print(f"ratio recorder / ffmpeg -c copy, round by round: {' '.join(f'{x:.2f}' for x in ratios)}")
        print(f"median of the rounds' ratios: {statistics.median(ratios):.2f}")
    # Its ffmpeg is the rest of its tree (an ffprobe at start-up is outside the window).
    windows = [r["window"] for r in rows if r["who"] == "recorder"]
    mine = statistics.median(w.own_ns / (w.total_ns - w.own_ns) for w in windows)
    print(f"ratio the recorder's Python / the rest of its tree (its ffmpeg): {mine:.3f}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in load_after)}")


if __name__ == "__main__":
    main()
