"""One reader of /proc for the tests and the benches: which process, its parent, its CPU time."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcStat:
    """What /proc/PID/stat says about one process; CPU times are user + system seconds."""

    name: str
    state: str
    ppid: int
    cpu: float
    # Of its children that ended and were waited for (they no longer have a /proc entry of their own).
    children_cpu: float


def proc_stat(pid: int | str) -> ProcStat:
    """Read /proc/PID/stat; raises OSError when there is no such process."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # The name is in parentheses and may hold spaces or ')': split after the last one.
    name = text[text.find("(") + 1 : text.rfind(")")]
    fields = text.rsplit(")", 1)[1].split()
    # Fields after the name: state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14), in clock ticks.
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return ProcStat(
        name=name,
        state=fields[0],
        ppid=int(fields[1]),
        cpu=(utime + stime) / CLK_TCK,
        children_cpu=(cutime + cstime) / CLK_TCK,
    )


def all_procs() -> dict[int, ProcStat]:
    """Every process that can be read now, by pid (one that ends meanwhile is left out)."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                out[int(entry)] = proc_stat(entry)
            except OSError:
                continue
    return out


def thread_ns(pid: int | str) -> dict[int, int]:
    """Nanoseconds on a CPU so far of each thread of the process, by thread id (/proc/PID/task/*/schedstat).

    Finer than /proc/PID/stat, which counts whole clock ticks (10 ms). Raises OSError when there is no
    such process; a thread that ends meanwhile is left out.
    """
    out = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            out[int(task)] = int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
    return out


def cpu_ns(pid: int | str) -> int:
    """Nanoseconds on a CPU so far, every thread of the process summed (`thread_ns`).

    A process that costs about a millisecond a second needs this to be told apart from one that costs
    1.1. A thread that ended is left out, so measure processes whose threads live through the
    measurement.
    """
    return sum(thread_ns(pid).values())
