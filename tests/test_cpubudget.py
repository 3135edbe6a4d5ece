"""The emulated Pi budgets (harness/cpubudget.py): a cgroup quota holds a process tree, and the box inside
reads its own budget from it (worker.budget.box_cpus)."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from harness import cpubudget
from harness.repo import REPO

pytestmark = pytest.mark.skipif(bool(cpubudget.problem()), reason=cpubudget.problem() or "")

SPIN = "import time\nend = time.monotonic() + 3\nwhile time.monotonic() < end: pass\n"


def test_the_pi_budgets_are_derived_from_the_published_figures() -> None:
    assert cpubudget.PI4.cores == 0.97
    assert cpubudget.PI5.cores == 2.2
    assert cpubudget.BUDGETS == {"pi4": cpubudget.PI4, "pi5": cpubudget.PI5}


def test_a_process_tree_in_a_budget_gets_no_more_than_its_quota() -> None:
    with cpubudget.held(0.05, "spin") as budget:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        # A parent shell and its busy child: the child is held too.
        child = subprocess.run(
            ["sh", "-c", f"{sys.executable} -c '{SPIN}'"], preexec_fn=budget.preexec, timeout=60, check=True
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        throttled, _ = budget.throttled()
    assert child.returncode == 0
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu < 0.05 * 3 + 0.15, cpu  # 3 s of spinning, 5% of a core (and a start-up's slack)
    assert throttled > 0
    assert not budget.dir.exists()


def test_the_box_reads_its_cpu_from_the_budget_it_runs_in() -> None:
    code = "from worker.budget import box_cpus; print(box_cpus())"
    with cpubudget.held(0.97, "pi4") as budget:
        out = subprocess.run(
            [sys.executable, "-c", code], preexec_fn=budget.preexec, cwd=REPO, capture_output=True, text=True
        )
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) == pytest.approx(0.97)
    outside = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert float(outside.stdout) >= 1  # the CPUs it may run on
