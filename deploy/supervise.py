#!/usr/bin/env python3
"""Start the box under supervisord with the settings of `.env`, or talk to the running supervisord.

    deploy/supervise.py [--env-file PATH] [supervisord args…]   run supervisord -n (systemd runs this)
    deploy/supervise.py [--env-file PATH] ctl [supervisorctl args…]

supervisord cannot read `.env` nor loop over GN_CAMERAS, so this launcher: loads and validates the
settings (environment > .env > defaults), exports them with absolute paths together with the values
supervisord.conf expands (GN_HOME, GN_BIN, GN_LOG_DIR, GN_RUN_DIR, GN_REDIS_PORT, GN_REDIS_DIR,
GN_REDIS_AUTOSTART, GN_WORKERS, GN_UPLOAD_AUTOSTART, GN_TRIGGER_AUTOSTART, GN_TRIGGER_INPUT), writes
one recorder program per camera from deploy/recorder.conf.in, creates the folders, and execs supervisord.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "supervisord.conf"
RECORDER_TEMPLATE = Path(__file__).resolve().parent / "recorder.conf.in"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# Inputs the supervised trigger listener can use (ENTER needs a terminal, which supervisord has not).
TRIGGER_INPUTS = ("gpio", "serial")


def _reexec_in_venv() -> None:
    """Run under the repository's .venv (where supervisord and gravanois live) even if started otherwise."""
    venv_python = REPO / ".venv" / "bin" / "python"
    if sys.prefix == sys.base_prefix and venv_python.exists():
        os.execv(str(venv_python), [str(venv_python), __file__, *sys.argv[1:]])


def _truthy(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def prepare(env_file: Path | None = None) -> dict[str, str]:
    """The environment supervisord runs with (settings + its own values); writes the recorder programs.

    Raises SettingsError (one line for the operator) on a bad setting.
    """
    sys.path.insert(0, str(REPO))
    from dotenv import dotenv_values

    from common.settings import SettingsError, load_settings, to_env

    env_file = env_file or REPO / ".env"
    environ = dict(os.environ)
    file_values = dotenv_values(env_file) if env_file.is_file() else {}

    def raw(name: str, default: str) -> str:
        return environ.get(name) or file_values.get(name) or default

    settings = load_settings(env_file=env_file)

    def absolute(p: Path) -> Path:
        # Relative paths in .env are relative to the repository, where .env lives, not to the caller.
        return p if p.is_absolute() else (REPO / p).resolve()

    data_dir = absolute(settings.data_dir)
    env = {**environ, **to_env(settings)}
    env["GN_DATA_DIR"] = str(data_dir)
    env["GN_BUFFER_DIR"] = str(absolute(settings.buffer_dir))
    env["GN_WM_LOGO"] = str(absolute(settings.wm_logo))
    if settings.wm_logo2 is not None:
        env["GN_WM_LOGO2"] = str(absolute(settings.wm_logo2))
    url = urlparse(settings.redis_url)
    local_redis = url.scheme == "redis" and (url.hostname or "127.0.0.1") in LOOPBACK
    workers = raw("GN_WORKERS", "2")
    if not workers.isdigit() or int(workers) < 1:
        raise SettingsError(f"GN_WORKERS={workers!r} is not valid: set it to a whole number of at least 1")
    trigger_input = raw("GN_TRIGGER_INPUT", "gpio")
    if trigger_input not in TRIGGER_INPUTS:
        raise SettingsError(
            f"GN_TRIGGER_INPUT={trigger_input!r} is not valid: use {' or '.join(TRIGGER_INPUTS)}"
        )
    env.update(
        GN_HOME=str(REPO),
        GN_BIN=str(Path(sys.executable).parent),
        GN_LOG_DIR=str(data_dir / "logs"),
        GN_RUN_DIR=str(data_dir / "run"),
        GN_REDIS_DIR=str(data_dir / "redis"),
        GN_REDIS_PORT=str(url.port or 6379),
        GN_REDIS_AUTOSTART=str(local_redis).lower(),
        GN_WORKERS=workers,
        GN_UPLOAD_AUTOSTART=str(settings.upload_enabled).lower(),
        GN_TRIGGER_AUTOSTART=str(_truthy(raw("GN_TRIGGER_AUTOSTART", "true"))).lower(),
        GN_TRIGGER_INPUT=trigger_input,
        # supervisord's children log to files: JSON lines unless the operator asked otherwise.
        PYTHONUNBUFFERED="1",
    )
    for key in ("GN_LOG_DIR", "GN_RUN_DIR", "GN_REDIS_DIR", "GN_BUFFER_DIR"):
        Path(env[key]).mkdir(parents=True, exist_ok=True)
    write_recorder_programs(Path(env["GN_RUN_DIR"]) / "recorders", [c.id for c in settings.cameras])
    return env


def write_recorder_programs(folder: Path, cameras: list[str]) -> list[Path]:
    """One `[program:recorder-<camera>]` file per camera; files of cameras no longer configured go."""
    from common.fsutil import write_bytes_atomic

    folder.mkdir(parents=True, exist_ok=True)
    template = RECORDER_TEMPLATE.read_text(encoding="utf-8")
    wanted = {folder / f"recorder-{cam}.conf": template.replace("{camera}", cam) for cam in cameras}
    for old in folder.glob("recorder-*.conf"):
        if old not in wanted:
            old.unlink()
    for path, text in wanted.items():
        write_bytes_atomic(path, text.encode())
    return sorted(wanted)


def main(argv: list[str]) -> None:
    """Parse `[--env-file PATH] [ctl] args…` and exec supervisord or supervisorctl."""
    env_file = None
    if len(argv) >= 2 and argv[0] == "--env-file":
        env_file, argv = Path(argv[1]), argv[2:]
    from common.settings import SettingsError

    try:
        env = prepare(env_file)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    bin_dir = Path(env["GN_BIN"])
    if argv[:1] == ["ctl"]:
        args = [str(bin_dir / "supervisorctl"), "-c", str(CONF), *argv[1:]]
    else:
        args = [str(bin_dir / "supervisord"), "-n", "-c", str(CONF), *argv]
    os.execve(args[0], args, env)


if __name__ == "__main__":
    _reexec_in_venv()
    sys.path.insert(0, str(REPO))
    main(sys.argv[1:])
