"""Settings: environment variables `GN_*`, one module per concern, combined in one frozen `Settings`.

    identity.py     the box's id, data and buffer folders, Redis, logs
    cameras.py      the cameras, how they record, the segment buffer
    capture.py      the highlight window, cooldown, opening hours, GPIO and serial buttons
    render.py       the watermark and thumbnail
    jobs.py         retries and retention of the jobs' results
    upload.py       the backend and this venue's credentials
    web.py          the web app
    supervision.py  the programs supervisord runs (deploy/supervise.py)
    fields.py       `setting(...)`: how a field declares its help, parser, range or choices, check
    core.py         `Settings` and the loops over its fields: load, validate, describe, to_env

Each field carries its rule in its declaration; a concern's rules that join several fields sit in its
module. Invalid values raise `SettingsError` with one line naming the variable and what to change.
"""

from __future__ import annotations

from common.settings.cameras import (
    ENCODERS,
    MAX_SEG_TIME,
    RECORD_MODES,
    SYNTHETIC_SOURCE,
    Camera,
    buffer_margin,
    camera_mode,
    parse_cameras,
)
from common.settings.capture import MAX_SIDE_SECONDS
from common.settings.core import CONCERNS, Settings, describe, live, load_settings, to_env, validate
from common.settings.fields import ENV_PREFIX, SettingsError, env_name
from common.settings.identity import LOG_FORMATS, LOG_LEVELS
from common.settings.supervision import TRIGGER_INPUTS

__all__ = [
    "CONCERNS",
    "ENCODERS",
    "ENV_PREFIX",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "MAX_SEG_TIME",
    "MAX_SIDE_SECONDS",
    "RECORD_MODES",
    "SYNTHETIC_SOURCE",
    "TRIGGER_INPUTS",
    "Camera",
    "Settings",
    "SettingsError",
    "buffer_margin",
    "camera_mode",
    "describe",
    "env_name",
    "live",
    "load_settings",
    "parse_cameras",
    "to_env",
    "validate",
]
