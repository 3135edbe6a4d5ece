"""Run from a git checkout: a script started with the system's Python execs itself again under the
checkout's `.venv` (`./run.sh setup` makes it), where the project's dependencies are.

Standard library only, and importable before the venv exists: deploy/supervise.py (run as a file from
a checkout) and the benchmarks in bench/ call it first thing. In an installed release nothing calls it:
the release's own interpreter runs `python -m deploy.supervise`.
"""

from __future__ import annotations

import os
import sys

from deploy import HERE

# In a checkout, the repository (where `.venv` lives); in an installed release, site-packages.
REPO = HERE.parent
VENV_PYTHON = REPO / ".venv" / "bin" / "python"


def run_in_venv(script: str) -> None:
    """Exec `script` (with this process's arguments) under the checkout's .venv, unless this Python is
    already a venv's or the checkout has none; returns only when it does nothing."""
    if sys.prefix == sys.base_prefix and VENV_PYTHON.exists():
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), script, *sys.argv[1:]])
