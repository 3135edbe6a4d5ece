"""Child processes that never outlive their parent, and a graceful stop for them."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send `sig` to this process when its parent thread dies (prctl PR_SET_PDEATHSIG)."""
    _libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


def _child_setup(parent_pid: int) -> None:
    set_parent_death_signal(signal.SIGKILL)
    # The parent may have died between fork and prctl: then nobody would ever kill us.
    if os.getppid() != parent_pid:
        os._exit(1)


def spawn(args: Sequence[str], **popen_kw: Any) -> subprocess.Popen[bytes]:
    """Start a child that is SIGKILLed by the kernel if this process (thread) dies, e.g. by SIGKILL.

    Spawn from the main thread (or a thread that lives as long as the child): the death signal fires
    when the *thread* that forked it exits.
    """
    parent = os.getpid()
    return subprocess.Popen(list(args), preexec_fn=lambda: _child_setup(parent), **popen_kw)


def stop(proc: subprocess.Popen[Any], grace: float = 5.0, first: int = signal.SIGINT) -> int | None:
    """Stop a child: `first` signal (SIGINT lets ffmpeg close its output), then SIGKILL after `grace`."""
    if proc.poll() is not None:
        return proc.returncode
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(first)
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        return proc.wait()


def kill_children(reap: bool = True) -> None:
    """SIGKILL (and reap, unless `reap` is false) every child of this process, found in /proc by parent id.

    A signal handler that raises can interrupt `spawn` after the fork but before the caller holds the
    child: that child has no Popen to stop it, yet would go on writing until this process exits. A
    signal handler itself passes `reap=False`: a Popen that reaps nothing would take the killed child
    for one that exited 0.
    """
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(text.rsplit(")", 1)[1].split()[1]) == me:
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(int(entry), signal.SIGKILL)
                if reap:
                    os.waitpid(int(entry), 0)
