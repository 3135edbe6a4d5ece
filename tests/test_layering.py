"""The package layering (README's table), checked on the source: who may import whom."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from common import keys
from common.pipeline import STAGES, HighlightState, SidecarStatus
from harness.repo import REPO

PROCESSES = ("recorder", "trigger", "worker")
PROJECT = ("common", *PROCESSES, "ops", "deploy", "assets")
# Never shipped: what the tests and the benchmarks share (harness), the tests, the benchmarks.
UNSHIPPED = ("harness", "tests", "bench")
# What each package may import from the project and the unshipped code (besides itself): production never
# imports the unshipped, the harness imports the project only, the benchmarks the project and the harness.
ALLOWED = {
    "assets": set(),
    "common": {"assets"},
    "recorder": {"common", "assets"},
    "trigger": {"common", "assets"},
    "worker": {"common", "assets"},
    "deploy": {"common", "assets"},
    "ops": {"common", "assets", "deploy", *PROCESSES},
    "harness": set(PROJECT),
    "bench": {*PROJECT, "harness"},
}


def imported_packages(path: Path) -> set[str]:
    """Top-level project (or unshipped) packages a module imports (at module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {n.split(".")[0] for n in names if n.split(".")[0] in (*PROJECT, *UNSHIPPED)}
    return found


@pytest.mark.parametrize("package", ALLOWED)
def test_package_imports_only_what_the_layering_allows(package: str) -> None:
    files = sorted((REPO / package).rglob("*.py"))
    assert files, f"{package}/ has no Python files"
    wrong = {
        str(f.relative_to(REPO)): sorted(bad)
        for f in files
        if (bad := imported_packages(f) - ALLOWED[package] - {package})
    }
    assert wrong == {}, f"{package} may import only {sorted(ALLOWED[package])}"


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The rule is not vacuous: an import of a sibling process package is found, even inside a function,
    and so is one of the unshipped code."""
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n    from worker.render import Render\n    import trigger.press\n"
        "from harness.media import make_clip\nimport tests.helpers\n"
    )
    assert imported_packages(module) == {"worker", "trigger", "harness", "tests"}


def doc_table(doc: Path, heading: str) -> list[str]:
    """The first column of the table under `## heading` in a Markdown doc (the backticked names)."""
    text = doc.read_text(encoding="utf-8").split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z_]+)` \|", text, re.M)


def test_the_docs_list_the_states_the_code_has() -> None:
    doc = REPO / "docs" / "pipeline.md"
    assert doc_table(doc, "Highlight states") == [s.value for s in HighlightState]
    assert doc_table(doc, "Sidecar statuses") == [s.value for s in SidecarStatus]


def test_each_contract_name_is_defined_once() -> None:
    """Job function paths, job-id rules and state names are spelled in common/pipeline.py only."""
    sources = [
        p
        for pkg in ("common", *PROCESSES, "ops")
        for p in (REPO / pkg).rglob("*.py")
        if p.name != "pipeline.py"
    ]
    spelled = {
        spec.function: [str(p.relative_to(REPO)) for p in sources if f'"{spec.function}"' in p.read_text()]
        for spec in STAGES.values()
    }
    assert spelled == {spec.function: [] for spec in STAGES.values()}
    job_id_rule = re.compile(r'f"gn-\{')
    assert [str(p.relative_to(REPO)) for p in sources if job_id_rule.search(p.read_text())] == []
    states = {f'state="{s.value}"' for s in HighlightState}
    assert [str(p.relative_to(REPO)) for p in sources if any(s in p.read_text() for s in states)] == []


def code_strings(path: Path) -> list[str]:
    """The string literals of a module's code (docstrings left out), an f-string as its text with `{}` for
    each replacement field: `f"gn:{device}"` is "gn:{}"."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    parts = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            out.append("".join(str(v.value) if isinstance(v, ast.Constant) else "{}" for v in node.values))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs | parts:
            out.append(node.value)
    return out


def checked_sources() -> list[Path]:
    """The modules where the rules below are looked for: the project's and the benchmarks'."""
    return sorted(p for pkg in (*PROJECT, "bench") for p in (REPO / pkg).rglob("*.py"))


def assert_written_only_in(calls: dict[str, list[str]]) -> None:
    """Each text (a call, a definition, a literal) is written in exactly the modules listed for it."""
    sources = checked_sources()
    for call, homes in calls.items():
        assert [str(p.relative_to(REPO)) for p in sources if call in p.read_text()] == homes, call


# Each rule, as a test on a module's string literals, and the one module allowed to spell it.
SPELLED_ONCE = {
    # (common/log.py spells the same letters as the log record's attribute for fields: another name.)
    "the Redis key prefix": (lambda s: s == keys.PREFIX, ["common/keys.py", "common/log.py"]),
    "a Redis key, queue name, job id or worker name built by hand": (
        lambda s: s.startswith(("gn:", "rq:", "gn.{}", "gn-{}")),
        ["common/keys.py"],
    ),
    "the camera-id pattern": (lambda s: "[A-Za-z0-9][A-Za-z0-9_-]{0,31}" in s, ["common/ids.py"]),
    "the compact UTC time pattern (press ids, stems)": (
        lambda s: r"\d{8}T\d{9}Z" in s,
        ["common/timeutil.py"],
    ),
    "a highlight's file name": (lambda s: s.startswith("highlight_{}"), ["common/ids.py"]),
    "an ffprobe frame-rate field": (lambda s: s in ("r_frame_rate", "avg_frame_rate"), ["common/ffmpeg.py"]),
    "the opening-hours syntax": (lambda s: r"(\d{1,2}):(\d{2})" in s, ["common/hours.py"]),
}


@pytest.mark.parametrize("rule", SPELLED_ONCE)
def test_each_rule_is_spelled_in_one_module(rule: str) -> None:
    """Names and patterns that several processes must agree on are spelled in one module each."""
    found, homes = SPELLED_ONCE[rule]
    sources = checked_sources()
    spelled = [str(p.relative_to(REPO)) for p in sources if any(found(s) for s in code_strings(p))]
    assert spelled == homes


def test_the_rule_finder_sees_a_hand_built_key(tmp_path: Path) -> None:
    """The check is not vacuous: a key, a job id and a pattern spelled by hand are found, docstrings not."""
    module = tmp_path / "m.py"
    module.write_text(
        '"""Keys live under gn:{device}."""\n'
        'def f(d, p):\n    """Not gn:x either."""\n    return f"gn:{d}:cam", f"gn-{d}-{p}", "rq:job:x"\n'
    )
    assert code_strings(module) == ["gn:{}:cam", "gn-{}-{}", "rq:job:x"]


def test_the_hot_spots_read_their_rule_from_common() -> None:
    """Where each rule used to be spelled again, the code now asks the module that owns it."""
    calls = {
        "latest_result(": ["common/pipeline.py"],  # why a job failed: pipeline.failure_of
        "Job.exists(": [],  # already there: pipeline.earlier_job
        ".hincrby(": ["common/counters.py"],  # counters: counters.incr with a keys.Counter
        "parse_open_hours(": ["common/hours.py", "common/settings/capture.py"],  # hours: common.hours
    }
    assert_written_only_in(calls)


def test_one_module_judges_whether_a_camera_records() -> None:
    """The stall limit is computed in common/verdict.py alone (the recorder's watchdog takes it from there),
    and only there is the recorder's health hash read for a verdict: status, the press, the build and the
    web ask it."""
    calls = {
        "effective_stall_seconds": ["common/settings/cameras.py", "common/verdict.py"],
        "stall_limit(": ["common/verdict.py"],
        "limit_for(": ["common/verdict.py", "recorder/supervisor.py"],
        '"last_segment_end"': ["common/verdict.py", "recorder/loop.py"],
        "keys.restarting(": ["common/verdict.py", "ops/restart.py"],
    }
    assert_written_only_in(calls)


def test_one_module_holds_each_part_of_the_progressive_render() -> None:
    """The ffmpeg arguments of a piece (the build's and the ahead encoder's batches) are built in
    worker/recipe.py alone, the ahead cache's folder is named in worker/aheadcache.py alone, and the
    pieces' directory and manifest in worker/pieces.py alone (the build writes them, the render reads
    them)."""
    calls = {
        '"-copyts"': ["worker/recipe.py"],  # a piece keeps the camera's clock
        "piece_args(": ["worker/recipe.py"],
        # worker/encoders.py: the render budget's encoders (libx264 or the Pi 4's) that recipe.py uses
        "x264_args(": ["worker/encoders.py", "worker/engines.py", "worker/recipe.py"],
        'data_dir / "ahead"': ["worker/aheadcache.py"],
        '"manifest.json"': ["worker/pieces.py"],
        "pieces-{": ["worker/pieces.py"],
    }
    assert_written_only_in(calls)


def test_one_module_holds_each_part_of_the_box_s_status() -> None:
    """The facts are gathered in ops/snapshot.py, judged in ops/attention.py (only the snapshot asks it, so
    `status`, `metrics` and the dashboard list the same problems), printed in ops/status.py and exposed to
    Prometheus in ops/metrics.py alone."""
    calls = {
        "def attention(": ["ops/attention.py"],
        "attention(settings": ["ops/attention.py", "ops/snapshot.py"],
        "NEEDS ATTENTION": ["ops/status.py"],
        "prometheus_client": ["ops/metrics.py"],
        "MetricFamily(": ["ops/metrics.py"],
    }
    assert_written_only_in(calls)
