"""Which version and which release of the box this process runs (`gravanois --version`, `status`)."""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

DISTRIBUTION = "gravanois-capture"
# Written last into every installed release (deploy/release.py): a release without it is unfinished.
RELEASE_FILE = "RELEASE"


def package_version() -> str:
    """The installed package's version ('unknown' when run from a tree that was never installed)."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"


def release_dir() -> Path | None:
    """The release folder this Python runs from on an installed box (…/releases/<id>), else None."""
    prefix = Path(sys.prefix).resolve()
    if prefix.parent.name == "releases" and (prefix / RELEASE_FILE).is_file():
        return prefix
    return None


def describe() -> str:
    """`0.2.0, release 0.2.0-3f2a9c1d0b7e` on an installed box, `0.2.0, not an installed release` else."""
    release = release_dir()
    where = f"release {release.name}" if release else "not an installed release"
    return f"{package_version()}, {where}"
