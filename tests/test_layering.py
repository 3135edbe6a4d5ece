"""The package layering (README's table), checked on the source: who may import whom."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from common.pipeline import STAGES, HighlightState, SidecarStatus
from tests.helpers import REPO

PROCESSES = ("recorder", "trigger", "worker")
PROJECT = ("common", *PROCESSES, "ops", "deploy", "assets")
# What each package may import from the project (besides itself).
ALLOWED = {
    "assets": set(),
    "common": {"assets"},
    "recorder": {"common", "assets"},
    "trigger": {"common", "assets"},
    "worker": {"common", "assets"},
    "deploy": {"common", "assets"},
    "ops": {"common", "assets", "deploy", *PROCESSES},
}


def imported_packages(path: Path) -> set[str]:
    """Top-level project packages a module imports (at module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {n.split(".")[0] for n in names if n.split(".")[0] in PROJECT}
    return found


@pytest.mark.parametrize("package", PROJECT)
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
    """The rule is not vacuous: an import of a sibling process package is found, even inside a function."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from worker.render import Render\n    import trigger.press\n")
    assert imported_packages(module) == {"worker", "trigger"}


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
