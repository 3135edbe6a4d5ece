"""The locks: complete, hashed, within pyproject.toml's ranges, and exactly what this venv runs."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib.metadata import distributions
from pathlib import Path

from packaging.markers import Marker, default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from harness.repo import REPO

BOX_LOCK = REPO / "requirements" / "box.txt"
TEST_LOCK = REPO / "requirements" / "test.txt"
# Installed by venv itself, not by the lock.
VENV_OWN = {"pip"}


@dataclass(frozen=True)
class Pin:
    """One entry of a pip-style lock (a package may have several, for different Python versions)."""

    name: str
    version: str
    marker: str
    hashes: tuple[str, ...]

    def applies(self, python_full_version: str | None = None) -> bool:
        """Whether the marker holds on this machine (or on it with another Python version)."""
        env = {key: str(value) for key, value in default_environment().items()} | {"extra": ""}
        if python_full_version:
            env.update(python_full_version=python_full_version, python_version=python_full_version[:4])
        return not self.marker or Marker(self.marker).evaluate(env)


def entries(lock: Path) -> list[Pin]:
    """Every entry of a lock."""
    text = re.sub(r"\\\n", " ", lock.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        req = Requirement(re.split(r"\s--hash", line, maxsplit=1)[0])
        [spec] = list(req.specifier)
        assert spec.operator == "==", f"{lock.name}: {req} is not pinned"
        hashes = tuple(re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
        out.append(Pin(canonicalize_name(req.name), spec.version, str(req.marker or ""), hashes))
    return out


def pins(lock: Path, python_full_version: str | None = None) -> dict[str, str]:
    """Package → version a machine like this one (or with that Python) installs from the lock."""
    return {p.name: p.version for p in entries(lock) if p.applies(python_full_version)}


def test_every_pin_is_exact_and_hashed() -> None:
    for lock in (BOX_LOCK, TEST_LOCK):
        assert entries(lock), lock
        assert [p.name for p in entries(lock) if not p.hashes] == [], lock.name


def test_the_test_lock_holds_the_box_pins() -> None:
    # Debian 12's Python (the box's) and this machine's.
    for python in ("3.11.2", None):
        box, test = pins(BOX_LOCK, python), pins(TEST_LOCK, python)
        assert box == {name: test.get(name) for name in box}


def test_the_box_lock_is_within_pyproject_ranges() -> None:
    """A dependency added or narrowed in pyproject.toml without a relock fails here."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    locked = {p.name: p.version for p in entries(TEST_LOCK)}
    wanted = [
        *project["dependencies"],
        *(d for extra in project["optional-dependencies"].values() for d in extra),
    ]
    for line in wanted:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in locked, (
            f"{req.name} is in pyproject.toml but not locked: run requirements/relock.sh --keep"
        )
        for pin in entries(TEST_LOCK):
            if pin.name == name:
                assert req.specifier.contains(pin.version, prereleases=True), (
                    f"{name}=={pin.version} vs {req}"
                )


def test_this_venv_runs_exactly_the_test_lock() -> None:
    locked = pins(TEST_LOCK)
    installed = {
        canonicalize_name(d.metadata["Name"]): d.version
        for d in distributions()
        if canonicalize_name(d.metadata["Name"]) not in {"gravanois-capture", *VENV_OWN}
    }
    assert installed == locked
