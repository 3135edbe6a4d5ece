"""Settings set from the fleet (`config/desired`, docs/fleet.md): the file the agent keeps them in.

`<GN_DATA_DIR>/remote-settings.json` holds the last desired config the box accepted: its version and
the settings it sets (GN names to JSON values). Every process reads it with its settings, above the
environment and `.env` (a command-line flag still beats it), so a reboot keeps what the fleet set.
The agent writes it atomically; a file that cannot be read is ignored, so it can never stop the box.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common.fsutil import write_json_atomic

FILE_NAME = "remote-settings.json"


def path_in(data_dir: Path) -> Path:
    """Where the remote settings of a box with this data folder are kept."""
    return data_dir / FILE_NAME


def read(path: Path) -> dict[str, Any]:
    """The whole record (`config_version`, `settings` …), or {} when there is none or it is unreadable."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) and isinstance(record.get("settings"), dict) else {}


def write(path: Path, record: dict[str, Any]) -> None:
    """Replace the record atomically (a power cut leaves the old or the new one)."""
    write_json_atomic(path, record)


def as_text(value: Any) -> str:
    """A JSON value of a desired config as the text of a GN_* variable (what the parsers read)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in value):
        return ",".join(str(x) for x in value)  # GN_RETRY_INTERVALS
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)
