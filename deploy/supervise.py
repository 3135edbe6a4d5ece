#!/usr/bin/env python3
"""Start the box under supervisord with the settings of `.env`, or talk to the running supervisord.

    python -m deploy.supervise [--env-file PATH] [supervisord args…]   supervisord -n (systemd runs this)
    python -m deploy.supervise [--env-file PATH] ctl [supervisorctl args…]
    python -m deploy.supervise [--env-file PATH] check                 the settings, one line if bad
    python -m deploy.supervise [--env-file PATH] plan                  what supervisord would run (digest)

(`deploy/supervise.py` in a checkout is the same.) supervisord cannot read `.env` nor loop over
GN_CAMERAS, so this launcher: loads and validates the settings (environment > .env > defaults; GN_WORKERS,
GN_TRIGGER_AUTOSTART and GN_TRIGGER_INPUT among them), exports them with absolute paths together with the
values supervisord.conf expands besides (GN_HOME, GN_BIN, GN_DEPLOY, GN_LOG_DIR, GN_RUN_DIR,
GN_REDIS_PORT, GN_REDIS_DIR, GN_REDIS_AUTOSTART, GN_UPLOAD_AUTOSTART), writes one recorder program per
camera from recorder.conf.in, creates the folders, notes its plan, and execs supervisord.

Programs are started through GN_BIN as the launcher was called: from an installed box that is
`/opt/gravanois/current/bin`, so a program restarted after an update runs the release `current` names
now, while supervisord itself keeps running from its own release (its script's interpreter is the
release's, by path). The plan is a digest of everything supervisord was started with (its files and
environment); an update compares the new release's plan with it to know whether restarting programs
one by one is enough or supervisord itself must start again.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from urllib.parse import urlparse

HERE = Path(__file__).resolve().parent
# In a checkout, the repository (where `.env` and `.venv` live); in an installed release, site-packages.
REPO = HERE.parent
CONF = HERE / "supervisord.conf"
RECORDER_TEMPLATE = HERE / "recorder.conf.in"
# Settings supervisord.conf itself depends on (programs, numprocs, autostart): handed as the box runs
# them, fleet's included, so that the plan changes when one of them does.
SUPERVISORD_SETTINGS = (
    "GN_CAMERAS",
    "GN_UPLOAD_CONCURRENCY",
    "GN_WORKERS",
    "GN_TRIGGER_AUTOSTART",
    "GN_TRIGGER_INPUT",
)
# The files supervisord runs with: a change in any of them means supervisord itself must start again.
PLAN_FILES = ("supervisord.conf", "recorder.conf.in", "redis.conf")
PLAN_NAME = "supervisord.plan"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def prepare(env_file: Path | None = None) -> tuple[dict[str, str], list[str]]:
    """The environment supervisord runs with (settings + its own values) and the camera ids.

    Raises SettingsError (one line for the operator) on a bad setting. Writes nothing.
    """
    from common.settings import load_settings, to_env

    env_file = env_file or REPO / ".env"
    # What the box runs, the fleet's settings (common/settings/remote.py) included: supervisord's own
    # decisions come from it. The programs are handed the settings without the fleet's, which each
    # reads from its file at start, so that a change from the fleet needs no new supervisord.
    settings = load_settings(env_file=env_file)
    handed = load_settings(env_file=env_file, remote=False)

    def absolute(p: Path) -> Path:
        # Relative paths in .env are relative to the folder .env is in, not to the caller.
        return p if p.is_absolute() else (env_file.resolve().parent / p).resolve()

    data_dir = absolute(settings.data_dir)
    # Every setting, GN_WORKERS, GN_TRIGGER_AUTOSTART and GN_TRIGGER_INPUT among them (supervisord.conf
    # expands those three), as the settings wrote them, so that all programs read the same values.
    full = to_env(settings)
    env = {**os.environ, **to_env(handed), **{name: full[name] for name in SUPERVISORD_SETTINGS}}
    env["GN_WORKERS"] = str(settings.workers or len(settings.cameras) + 1)
    env["GN_DATA_DIR"] = str(data_dir)
    env["GN_BUFFER_DIR"] = str(absolute(settings.buffer_dir))
    env["GN_WM_LOGO"] = str(absolute(settings.wm_logo))
    if settings.wm_logo2 is not None:
        env["GN_WM_LOGO2"] = str(absolute(settings.wm_logo2))
    url = urlparse(settings.redis_url)
    local_redis = url.scheme == "redis" and (url.hostname or "127.0.0.1") in LOOPBACK
    env.update(
        # The programs' working folder: the box's own, which no update removes.
        GN_HOME=str(data_dir),
        # As called (not resolved): through the `current` link on an installed box (see above).
        GN_BIN=str(Path(sys.executable).parent),
        GN_DEPLOY=str(HERE),
        GN_LOG_DIR=str(data_dir / "logs"),
        GN_RUN_DIR=str(data_dir / "run"),
        GN_REDIS_DIR=str(data_dir / "redis"),
        GN_REDIS_PORT=str(url.port or 6379),
        GN_REDIS_AUTOSTART=str(local_redis).lower(),
        GN_UPLOAD_AUTOSTART=str(settings.upload_enabled).lower(),
        GN_AGENT_AUTOSTART=str(settings.fleet_enabled).lower(),
        # supervisord's children log to files: JSON lines unless the operator asked otherwise.
        PYTHONUNBUFFERED="1",
    )
    return env, [c.id for c in settings.cameras]


def plan(env: dict[str, str]) -> str:
    """A digest of what supervisord runs with: its files and the environment the launcher sets.

    GN_DEPLOY (this release's own folder) is left out: the files it holds are counted by content.
    """
    digest = hashlib.sha256()
    for name in PLAN_FILES:
        digest.update(name.encode() + b"\0" + (HERE / name).read_bytes() + b"\0")
    ours = {k: v for k, v in env.items() if k.startswith("GN_") and k != "GN_DEPLOY"}
    digest.update(json.dumps(ours, sort_keys=True).encode())
    return digest.hexdigest()


def materialize(env: dict[str, str], cameras: list[str]) -> None:
    """The folders, one recorder program per camera, and the plan supervisord is about to run."""
    from common.fsutil import write_bytes_atomic

    for key in ("GN_LOG_DIR", "GN_RUN_DIR", "GN_REDIS_DIR", "GN_BUFFER_DIR"):
        Path(env[key]).mkdir(parents=True, exist_ok=True)
    run_dir = Path(env["GN_RUN_DIR"])
    write_recorder_programs(run_dir / "recorders", cameras)
    write_bytes_atomic(run_dir / PLAN_NAME, (plan(env) + "\n").encode())


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
    """Parse `[--env-file PATH] [ctl|check|plan] args…`; exec supervisord or supervisorctl, or answer."""
    env_file = None
    if len(argv) >= 2 and argv[0] == "--env-file":
        env_file, argv = Path(argv[1]), argv[2:]
    from common.settings import SettingsError

    try:
        env, cameras = prepare(env_file)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    bin_dir = Path(env["GN_BIN"])
    if argv[:1] == ["check"]:
        print(f"settings ok: {len(cameras)} camera(s), data in {env['GN_DATA_DIR']}")
        return
    if argv[:1] == ["plan"]:
        print(plan(env))
        return
    if argv[:1] == ["ctl"]:
        args = [str(bin_dir / "supervisorctl"), "-c", str(CONF), *argv[1:]]
    else:
        materialize(env, cameras)
        args = [str(bin_dir / "supervisord"), "-n", "-c", str(CONF), *argv]
    os.execve(args[0], args, env)


if __name__ == "__main__":
    if not __package__:
        # Run as a file from a checkout (deploy/supervise.py): the repository's packages and venv. Run as
        # `python -m deploy.supervise` (an installed box) the import path stays as the interpreter set it,
        # through `current`, so that every path handed to the programs follows the link.
        sys.path.insert(0, str(REPO))
        from deploy.checkout import run_in_venv

        run_in_venv(__file__)  # where supervisord and gravanois live
    main(sys.argv[1:])
