"""How a box is started, installed and updated.

Everything here ships inside the package (a release is a venv built from the lock and the wheel):
`supervise` (the launcher systemd runs), `release` (the versioned releases, the `current` link and the
update's state), and the files they use: supervisord.conf, recorder.conf.in, redis.conf, the systemd
unit, the udev rule, the installer and the boot-time rollback, and the locks under requirements/.
"""

from __future__ import annotations

from pathlib import Path

# The package's own folder, resolved: the files of the release this code belongs to, never another's.
HERE = Path(__file__).resolve().parent


def shipped(name: str) -> Path:
    """A file that ships with this release (supervisord.conf, redis.conf, requirements/box.txt …)."""
    return HERE / name
