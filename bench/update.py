#!/usr/bin/env python3
"""How long a camera does not record during `gravanois update`, against restarting its recorder alone.

An installed box (releases, `current`, boot.sh; supervised as its systemd unit does) records one synthetic
camera. In interleaved rounds it is, in turn: its recorder restarted alone (`supervisorctl restart`,
the honest floor: an update can cost no less than that), updated to a release whose programs are
restarted one by one, and updated to a release that needs a fresh supervisord (its supervisord.conf
differs). For each, the longest gap between the camera's consecutive segments around it, and the
update's own duration. Prints a table: medians, ratios to the recorder restart, and the load average.

    bench/update.py [--rounds 3] [--watch 10]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from deploy.checkout import run_in_venv  # noqa: E402

run_in_venv(__file__)  # the project's venv (the README's setup) has the dependencies

from common import keys  # noqa: E402
from common.redisconn import members  # noqa: E402
from common.segments import Segment  # noqa: E402
from harness.installed_box import InstalledBox, Releases  # noqa: E402

BOX = {
    "GN_CAMERAS": '{"cam1": "testsrc:640x360@25"}',
    "GN_WORKERS": "2",
    "GN_TRIGGER_INPUT": "gpio",
    "GPIOZERO_PIN_FACTORY": "mock",
    "GN_WM_AHEAD": "false",
}


def longest_gap(box: InstalledBox, since: float, until: float) -> float:
    """The longest hole between consecutive segments of cam1 that opened after `since` (and before
    `until`): what this restart cost, not the one before it."""
    key = keys.segments(box.device, "cam1")
    raw = members(box.conn.zrangebyscore(key, since - 30, until))
    segs = sorted(Segment.from_member(m) for m in raw)
    return max(
        (b.start - a.end for a, b in itertools.pairwise(segs) if a.end >= since - 1), default=float("nan")
    )


def settle(box: InstalledBox, seconds: float = 6.0) -> None:
    box.wait_started()
    time.sleep(seconds)  # segments after the restart, so the gap is closed on both sides


def restart_recorder(box: InstalledBox) -> tuple[float, float]:
    t0 = time.time()
    done = box.ctl("restart", "recorder-cam1")
    assert done.returncode == 0, done.stdout + done.stderr
    took = time.time() - t0
    settle(box)
    return longest_gap(box, t0, time.time()), took


def update(box: InstalledBox, wheel: Path, watch: float, expect: str) -> tuple[float, float]:
    t0 = time.time()
    proc = box.start_update(str(wheel), "--watch", str(watch))
    out, err = proc.communicate(timeout=900)
    took = time.time() - t0
    assert proc.returncode == 0 and expect in out, out + err
    settle(box)
    return longest_gap(box, t0, time.time()), took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--watch", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gn-bench-update-") as tmp:
        releases = Releases(Path(tmp))
        a, b = releases.wheel("0.1.0"), releases.wheel("0.1.1")

        def fresh_conf(src: Path) -> None:
            conf = src / "supervisord.conf"
            conf.write_text(conf.read_text() + "\n; differs: needs a fresh supervisord\n")

        c = releases.wheel("0.1.2", fresh_conf)
        results: dict[str, list[tuple[float, float]]] = {
            "recorder restart": [],
            "one by one": [],
            "fresh": [],
        }
        with InstalledBox(Path(tmp) / "box", a, **BOX) as box:
            settle(box, 10)
            # A→B and B→A: one by one; B→C and C→B: a fresh supervisord. Each after a recorder restart.
            fresh = "supervisord started anew"
            cycle = [(b, "one by one"), (c, fresh), (b, fresh), (a, "one by one")]
            for _ in range(args.rounds):
                for wheel, expect in cycle:
                    results["recorder restart"].append(restart_recorder(box))
                    kind = "one by one" if expect == "one by one" else "fresh"
                    results[kind].append(update(box, wheel, args.watch, expect))
        base = statistics.median(g for g, _ in results["recorder restart"])
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}  (cores: {os.cpu_count()})")
        print(
            f"{'what':<40} {'n':>3} {'gap median':>11} {'gap max':>8} {'vs restart':>10} {'took median':>12}"
        )
        names = {
            "recorder restart": "recorder restarted alone (baseline)",
            "one by one": "update, programs one by one",
            "fresh": "update, fresh supervisord",
        }
        for kind, rows in results.items():
            gaps = [g for g, _ in rows]
            took = statistics.median(t for _, t in rows)
            gap = statistics.median(gaps)
            print(
                f"{names[kind]:<40} {len(rows):>3} {gap:>10.2f}s {max(gaps):>7.2f}s {gap / base:>9.2f}x "
                f"{took:>11.1f}s"
            )


if __name__ == "__main__":
    main()
