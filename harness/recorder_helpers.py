"""The recorder for its tests and benchmarks: `gravanois recorder` as a real process, its index watched."""

from __future__ import annotations

import itertools
import signal
import subprocess
import time
from pathlib import Path

import redis

from common import keys
from common.redisconn import text
from common.segments import Segment, SegmentIndex
from common.settings import Settings
from harness.procfs import all_procs, proc_stat
from harness.repo import REPO, gn_env, gravanois_cmd
from recorder.segmenter import seg_name

# Small, cheap synthetic camera for tests.
TEST_SOURCE = "testsrc:320x240@15"
FRAME = 1 / 15


def prefill_buffer(directory: Path, seconds: int = 120, size: int = 188 * 195) -> None:
    """`seconds` (the default GN_BUFFER_SECONDS) of closed one-second segments ending now, as a recorder
    that has run for a while leaves them: retention works from its first second on (for the benches).

    Their content is never read, only weighed and deleted; 36 KB is one second of the benches' camera.
    """
    directory.mkdir(parents=True)
    now = round(time.time(), 3)
    for i in range(seconds):
        start = now - seconds + i
        (directory / seg_name(start, start + 1)).write_bytes(b"\x47" * size)


class RecorderProc:
    """A `gravanois recorder` child whose log goes to a file."""

    def __init__(self, settings: Settings, camera: str, log_dir: Path, *args: str, **env: str) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"recorder-{camera}-{time.monotonic_ns()}.log"
        self.camera = camera
        self.settings = settings
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                gravanois_cmd("recorder", "--camera", camera, *args),
                env=gn_env(settings, **env),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait; the recorder must be gone within `timeout`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"recorder did not stop within {timeout} s:\n{self.log()[-2000:]}") from None

    def kill_quietly(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def index_of(conn: redis.Redis, settings: Settings, camera: str) -> SegmentIndex:
    return SegmentIndex(conn, settings.device_id, camera)


def health(conn: redis.Redis, settings: Settings, camera: str) -> dict[str, str]:
    raw = conn.hgetall(keys.camera_health(settings.device_id, camera))
    return {text(k): text(v) for k, v in raw.items()}


def ffmpeg_pid(conn: redis.Redis, settings: Settings, camera: str) -> int | None:
    pid = health(conn, settings, camera).get("pid")
    return int(pid) if pid else None


def alive(pid: int) -> bool:
    """True if a process with this pid exists and is not a zombie."""
    try:
        return proc_stat(pid).state != "Z"
    except OSError:
        return False


def children_ffmpeg(parent: int) -> list[int]:
    """Pids of ffmpeg processes whose parent is `parent`."""
    return [pid for pid, st in all_procs().items() if st.name == "ffmpeg" and st.ppid == parent]


def on_disk(settings: Settings, camera: str) -> list[str]:
    d = settings.camera_buffer_dir(camera)
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def max_gap(segments: list[Segment]) -> float:
    """Largest hole (or overlap, negative) between consecutive segments."""
    return max((b.start - a.end for a, b in itertools.pairwise(segments)), default=0.0)
