"""`gravanois demo`: the README's main command, run for real (private Redis, recorder, worker, press)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from common.ffmpeg import probe
from harness.repo import REPO, gravanois_cmd
from tests.helpers import RENDER_FIELDS, SEED_FIELDS


def processes_mentioning(marker: str, settle: float = 5.0) -> list[str]:
    """Live processes whose command line or environment mentions `marker` (given `settle` s to go)."""
    deadline = time.monotonic() + settle
    while (found := _scan(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def _scan(marker: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            text = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in text:
            found.append(entry.name)
    return found


@pytest.mark.slow
def test_demo_prints_a_finished_highlight_and_leaves_nothing_running(tmp_path: Path) -> None:
    out_dir = tmp_path / "demo-out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GN_")}
    env["PYTHONPATH"] = str(REPO)
    res = subprocess.run(
        gravanois_cmd(
            "demo", "--pre", "3", "--post", "2", "--source", "testsrc:320x240@15", "--data-dir", str(out_dir)
        ),
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,  # a fresh place: no .env
    )
    assert res.returncode == 0, res.stdout + res.stderr
    paths = dict(re.findall(r"^  (clip|thumbnail|sidecar)\s+(\S+)$", res.stdout, re.M))
    assert set(paths) == {"clip", "thumbnail", "sidecar"}, res.stdout
    assert re.search(r"^  court page http://127\.0\.0\.1:\d+/c/cam1 ", res.stdout, re.M), res.stdout
    clip, thumb, sidecar = (Path(paths[k]) for k in ("clip", "thumbnail", "sidecar"))
    for path in (clip, thumb, sidecar):
        assert path.is_file() and path.is_relative_to(out_dir), path
    assert clip.suffix == ".mp4" and thumb.suffix == ".jpg" and sidecar.suffix == ".json"
    meta = json.loads(sidecar.read_text())
    # The sidecar's content is printed too, and it is complete.
    assert json.dumps(meta, indent=2, ensure_ascii=False) in res.stdout
    for key in (*SEED_FIELDS, *RENDER_FIELDS, "camera", "press_at"):
        assert key in meta, key
    assert meta["status"] == "watermarked" and meta["camera"] == "cam1"
    assert (meta["pre_seconds"], meta["post_seconds"]) == (3, 2)
    assert Path(meta["wm_path"]) == clip and Path(meta["thumbnail_path"]) == thumb
    info = probe(clip)
    assert info.duration_sec >= 4.5 and info.codec == "h264"
    assert processes_mentioning(str(out_dir)) == []
    assert str(out_dir) in res.stdout.splitlines()[-1]


def test_demo_says_what_is_missing(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GN_")}
    env.update(PYTHONPATH=str(REPO), PATH=str(empty))
    res = subprocess.run(
        gravanois_cmd("demo"), env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert res.returncode == 2
    assert (
        res.stderr.strip()
        == "error: ffmpeg is not installed: run `sudo apt-get install -y ffmpeg` (or ./run.sh setup)"
    )
