"""This repository as the tests and the benchmarks use it: its root, a copy of its tracked files, its
wheel, and the `gravanois` command run from it (command line and environment)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from common.settings import Settings, to_env

REPO = Path(__file__).resolve().parent.parent


def copy_checkout(dest: Path) -> Path:
    """A copy of the tracked files, as a fresh clone has them (links stay links)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for rel in filter(None, listed.decode().split("\0")):
        source, target = REPO / rel, dest / rel
        if not source.is_symlink() and not source.is_file():
            continue  # deleted in the work tree
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)
    return dest


def build_wheel(src: Path, out: Path) -> Path:
    """The project's wheel built from `src` (a copy of the checkout) into `out`."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = out.glob("gravanois_capture-*.whl")
    return wheel


def gn_env(settings: Settings, **extra: str) -> dict[str, str]:
    """An environment for a `gravanois` child process with these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GN_")}
    env.update(to_env(settings))
    env.update(extra)
    env["PYTHONPATH"] = str(REPO)
    return env


def gravanois_cmd(*args: str) -> list[str]:
    """Command line running the `gravanois` CLI from this checkout."""
    return [sys.executable, "-m", "common.cli", "--env-file", "/dev/null", *args]
