"""A plain, non-editable install works: the wheel in a fresh venv runs the demo from anywhere."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from common.ffmpeg import probe
from tests.helpers import REPO


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_runs_the_demo_from_another_directory(tmp_path: Path) -> None:
    # Build from a copy of the tracked files: what a fresh clone holds, not this work tree's extras.
    src = tmp_path / "src"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, tracked):
        rel = name.decode()
        if not (REPO / rel).is_file():
            continue
        dest = src / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes((REPO / rel).read_bytes())
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(src)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = wheels.glob("gravanois_capture-*.whl")
    venv = tmp_path / "v"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(wheel)], capture_output=True, text=True, timeout=600
    )
    assert installed.returncode == 0, installed.stderr[-3000:]

    elsewhere = tmp_path / "elsewhere"  # no .env, no repository: nothing configured
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GN_", "PYTHON"))}
    out_dir = elsewhere / "out"
    res = subprocess.run(
        [str(venv / "bin" / "gravanois"), "demo", "--pre", "3", "--post", "2", "--data-dir", str(out_dir)],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    paths = dict(re.findall(r"^  (clip|thumbnail|sidecar)\s+(\S+)$", res.stdout, re.M))
    clip = Path(paths["clip"])
    assert clip.is_relative_to(out_dir) and probe(clip).codec == "h264"
    # The logo it used is the package's own, inside the venv, not the repository's.
    logo = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import assets; print(assets.default_logo())"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(logo).is_file() and Path(logo).is_relative_to(venv)
