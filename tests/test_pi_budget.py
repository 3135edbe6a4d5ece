"""The whole box inside the emulated Pi 4 CPU budget (harness/cpubudget.py: a cgroup quota of 0.97 of a
core here, an emulation) with two 1080p30 cameras and the default settings: it measures what encoding
costs it, decides by itself, and keeps every press's wait after the post-roll short without a gap in
the recording. The cameras (GStreamer RTSP servers) run outside the budget, as cameras do, in a group of
their own that gets the CPU it needs first, as the box's budget does (up to its quota): other tests
running meanwhile take what is left. They send a pre-encoded loop of their picture (0.04 of a core
each), not one drawn and encoded live (0.6 each): two of those beside the box's quota asked more than
this 2-core machine has, and the box was the one held back.

`pytest -s` prints each press's wait and the decision; docs/pi.md quotes them.
"""

from __future__ import annotations

import itertools
import json
import re
import statistics
import time
from pathlib import Path

import pytest

from common import budget as model
from common import keys
from common.budget import Size, VideoEncoder
from common.ffmpeg import probe
from common.segments import GAP_TOLERANCE, Segment
from common.timeutil import parse_iso
from harness import cpubudget
from harness.box import Box
from harness.rtsp_server import RtspServer
from tests.helpers import wait_for

PRESS_EVERY, PRESSES, POST = 30.0, 10, 10.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.first,  # six minutes long: it starts first, beside the other tests
    pytest.mark.timeout(1200),  # a minute to fill the pre-roll, five of presses, their highlights
    pytest.mark.skipif(bool(cpubudget.problem()), reason=cpubudget.problem() or ""),
    pytest.mark.skipif(not RtspServer.available(), reason="no GStreamer RTSP server (python3-gi)"),
]


def press(box: Box, camera: str) -> str:
    res = box.gravanois("trigger", "press", "--camera", camera)
    match = re.search(r"clip=(\S+)", res.stdout + res.stderr)
    assert match, res.stdout + res.stderr
    return Path(match.group(1)).stem


def waited(box: Box, stem: str) -> float:
    """A finished highlight's wait after the post-roll, by the box's own clock: from the press it registered
    (`press_at`) plus the post-roll to its final sidecar (`updated_at`), not to when this test, busy pressing
    and asking `status`, happened to look."""
    side = json.loads((box.output_dir / f"{stem}.json").read_text())
    return parse_iso(side["updated_at"]) - parse_iso(side["press_at"]) - float(side["post_seconds"])


def largest_gap(box: Box, camera: str) -> float:
    """The largest hole between two consecutive indexed segments of a camera now (0 without a hole)."""
    members: list[bytes] = box.conn.zrange(keys.segments(box.device, camera), 0, -1)  # type: ignore[assignment]
    segs = sorted(Segment.from_member(m) for m in members)
    return max((b.start - a.end for a, b in itertools.pairwise(segs)), default=0.0)


def test_two_1080p30_cameras_in_a_pi4_budget_every_press_a_highlight_within_seconds(tmp_path: Path) -> None:
    cams = {
        name: RtspServer(fps=30, width=1920, height=1080, audio=True, path=f"/{name}", loop_seconds=6)
        for name in ("c1", "c2")
    }
    with cams["c1"], cams["c2"], cpubudget.held(None, "cameras") as cameras:
        for cam in cams.values():
            assert cam.proc is not None
            cameras.add(cam.proc.pid)
        with cpubudget.held(cpubudget.PI4.cores, "pi4") as held:
            run_box(tmp_path, cams, held)


def decided_again(shown: dict) -> dict:
    """The decision the box's model makes from the costs, box and options in force `status` shows."""
    costs = {cam: {model.parse_cost_key(k): v for k, v in c.items()} for cam, c in shown["costs"].items()}
    box_figures = model.Box(
        cpus=shown["cpus"], reserve=shown["reserve"], pre_seconds=40, post_seconds=POST, seg_seconds=1
    )
    held = {cam: model.Option.parse(label) for cam, label in shown["held_from"].items()}
    cameras: dict = model.summary(box_figures, model.decide(box_figures, costs, held))["cameras"]
    return cameras


def run_box(tmp_path: Path, cams: dict[str, RtspServer], held: cpubudget.CpuBudget) -> None:
    box = Box(
        tmp_path,
        GN_CAMERAS=json.dumps({name: cam.url for name, cam in cams.items()}),
        GN_TRIGGER_INPUT="gpio",
        GPIOZERO_PIN_FACTORY="mock",
    )
    box.cpu = held
    pressed: dict[str, dict] = {}  # stem → the decision for its camera shown when it was pressed
    done: dict[str, float] = {}  # stem → its wait after the post-roll
    gaps = {name: 0.0 for name in cams}

    def look() -> None:
        for stem in pressed.keys() - done.keys():
            if box.finished(stem):
                done[stem] = waited(box, stem)
        for name in cams:
            gaps[name] = max(gaps[name], largest_gap(box, name))

    with box:
        for name in cams:
            box.wait_recording(name, seconds=45, timeout=180)
        shown = wait_for(
            "the budget", lambda: (s := box.status()[1]).get("budget", {}).get("cameras") and s, 180
        )["budget"]
        # The box's own decision, made again from what it measured, is the one status reports.
        assert shown["cameras"] == decided_again(shown)
        assert shown["cpus"] == pytest.approx(cpubudget.PI4.cores)
        print(f"\ndecision in the Pi 4 budget: {json.dumps(shown['cameras'])}; costs {shown['costs']}")
        start = time.monotonic()
        for i in range(PRESSES):
            time.sleep(max(0.0, start + i * PRESS_EVERY - time.monotonic()))
            decision = box.status()[1]["budget"]
            for name in cams:
                pressed[press(box, name)] = decision["cameras"][name]
            while time.monotonic() < start + (i + 1) * PRESS_EVERY - 3:
                look()
                time.sleep(0.2)
        deadline = time.monotonic() + 180
        while pressed.keys() - done.keys() and time.monotonic() < deadline:
            look()
            time.sleep(0.2)
        final = box.status()[1]["budget"]
        throttled, throttled_s = held.throttled()
    waits = sorted(done.values())
    print(f"waits after the post-roll: {[round(w, 1) for w in waits]}")
    median = statistics.median(waits)
    print(
        f"median {median:.1f} s; largest gaps {gaps}; quota stopped the box {throttled}x, {throttled_s:.0f} s"
    )
    print(f"decision at the end: {json.dumps(final['cameras'])}; costs {final['costs']}")
    assert sorted(pressed.keys() - done.keys()) == []  # every press became a highlight
    assert all(g <= GAP_TOLERANCE for g in gaps.values()), gaps
    assert final["cameras"] == decided_again(final)  # what status shows is still the box's own decision
    assert median < 7.0
    for stem, choice in pressed.items():
        side = json.loads((box.output_dir / f"{stem}.json").read_text())
        if choice["path"] == model.RenderPath.AHEAD:
            assert (side.get("progressive") or {}).get("ahead_pieces"), stem
        if choice["path"] != model.RenderPath.SINGLE and choice["size"] == Size.P720:
            assert probe(box.output_dir / f"{stem}.mp4").height == 720, stem
        assert choice["encoder"] == VideoEncoder.SOFTWARE  # no V4L2 encoder here
