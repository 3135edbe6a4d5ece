"""Files the box ships (the default watermark logo): package data, found wherever the package is installed."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def default_logo() -> Path:
    """The default watermark logo (GN_WM_LOGO when unset)."""
    return Path(str(files(__name__) / "logo.png"))
