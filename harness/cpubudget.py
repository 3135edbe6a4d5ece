"""Emulated Raspberry Pi CPU budgets: a process tree held to a fraction of this machine's CPU by a
cgroup v1 CPU quota (`cpu.cfs_quota_us`), for the tests and the benches. An emulation, not a Pi.

A Pi's four cores are each several times slower at x264 than a core of this x86 machine; what the box
can spend per second is then about `cores x (Pi core / x86 core)` of one core here. The fraction of a Pi
core is derived in docs/pi.md from published single-thread benchmarks of both boards and the same
benchmark's CPU time measured on this machine (`SYSBENCH_EVENTS_PER_CPU_SECOND`). The quota holds the
total CPU; it does not make the work run on four slow cores instead of fewer fast ones (the parallelism
differs), nor does it emulate the Pi's memory, disks or its hardware encoder.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CPU_ROOT = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 100_000

# `sysbench cpu --threads=1` (its default --cpu-max-prime=10000) events per second published for each
# board on 64-bit Raspberry Pi OS, without overclocking (docs/pi.md cites the source).
PI4_SYSBENCH_EVENTS = 812.0  # Raspberry Pi 4, Cortex-A72 at 1.8 GHz
PI5_SYSBENCH_EVENTS = 1847.0  # Raspberry Pi 5, Cortex-A76 at 2.4 GHz
# The same benchmark here, per CPU-second of the sysbench process (its rusage, so a busy machine does
# not lower it): 5000 events in 1.45-1.51 CPU-s, three runs on 2026-12-06 (docs/pi.md).
SYSBENCH_EVENTS_PER_CPU_SECOND = 3360.0
PI_CORES = 4


@dataclass(frozen=True)
class Budget:
    """A named CPU budget in cores of this machine."""

    name: str
    cores: float


def pi_budget(name: str, events_per_second: float) -> Budget:
    """A Pi's four cores, each worth its benchmark's fraction of a core here."""
    return Budget(name, round(PI_CORES * events_per_second / SYSBENCH_EVENTS_PER_CPU_SECOND, 2))


PI4 = pi_budget("Pi 4", PI4_SYSBENCH_EVENTS)  # 0.97 of a core here
PI5 = pi_budget("Pi 5", PI5_SYSBENCH_EVENTS)  # 2.2 cores: more than this 2-core machine has
BUDGETS = {"pi4": PI4, "pi5": PI5}


def problem() -> str:
    """Why a CPU budget cannot be emulated here ('' when it can): cgroup v1's cpu controller and root."""
    if not (CPU_ROOT / "cpu.cfs_quota_us").is_file():
        return f"no cgroup v1 cpu controller at {CPU_ROOT}"
    if not os.access(CPU_ROOT, os.W_OK):
        return f"{CPU_ROOT} is not writable (run as root)"
    return ""


# The CPU weight of an emulated box or camera against one ordinary process of this machine (1024): a
# test's Pi gets its whole quota however busy the rest of the machine (other tests) is, and its cameras
# the CPU they need, as a Pi and real cameras would.
FAVOURED_SHARES = 16 * 1024


class CpuBudget:
    """A child cgroup with a CPU quota (`cores`; None: no quota) and a high weight, so that it gets what
    it may use first; processes added to it (and their children) share it."""

    def __init__(self, cores: float | None, name: str = "") -> None:
        self.cores = cores
        self.dir = CPU_ROOT / f"gn-budget-{name or 'x'}-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    def __enter__(self) -> CpuBudget:
        self.dir.mkdir()
        (self.dir / "cpu.shares").write_text(str(FAVOURED_SHARES))
        if self.cores is not None:
            (self.dir / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (self.dir / "cpu.cfs_quota_us").write_text(str(max(1000, round(self.cores * PERIOD_US))))
        return self

    def add(self, pid: int) -> None:
        """Hold a process (and the children it starts from now on) to the budget."""
        (self.dir / "cgroup.procs").write_text(str(pid))

    def pids(self) -> list[int]:
        """The processes in the budget now."""
        return [int(p) for p in (self.dir / "cgroup.procs").read_text().split()]

    def throttled(self) -> tuple[int, float]:
        """How often the quota stopped the group, and for how many seconds in all."""
        stat = dict(line.split() for line in (self.dir / "cpu.stat").read_text().splitlines())
        return int(stat.get("nr_throttled", 0)), int(stat.get("throttled_time", 0)) / 1e9

    def preexec(self) -> None:
        """For subprocess.Popen(preexec_fn=…): the child joins the budget before it execs."""
        self.add(os.getpid())

    def __exit__(self, *exc: object) -> None:
        # Whatever is left goes back to the root group, then the group can go (a process still exiting
        # keeps it busy for a moment).
        for _ in range(50):
            for pid in self.pids():
                with contextlib.suppress(OSError):
                    (CPU_ROOT / "cgroup.procs").write_text(str(pid))
            try:
                self.dir.rmdir()
                return
            except OSError:
                time.sleep(0.1)


@contextlib.contextmanager
def held(cores: float | None, name: str = "") -> Iterator[CpuBudget]:
    """`with held(PI4.cores) as b: b.add(pid)`: a CPU budget for as long as the block runs."""
    with CpuBudget(cores, name) as budget:
        yield budget
