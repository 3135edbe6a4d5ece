"""A plain, non-editable install works: the wheel in a fresh venv runs the demo from anywhere."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from common.ffmpeg import probe
from tests.helpers import build_wheel, copy_checkout


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_runs_the_demo_from_another_directory(tmp_path: Path) -> None:
    src = copy_checkout(tmp_path / "src")
    wheel = build_wheel(src, tmp_path / "wheels")
    venv = tmp_path / "v"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # As a box installs a release: exactly the box's lock, then the wheel without resolving anything.
    for args in (["--require-hashes", "-r", str(src / "requirements" / "box.txt")], [str(wheel)]):
        installed = subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", "--no-deps", *args],
            capture_output=True,
            text=True,
            timeout=600,
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
