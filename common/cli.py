"""`gravanois`: one click group; each process package contributes subcommands via entry points.

The subcommands are declared in pyproject.toml under `gravanois.commands` and loaded only when used,
so `common` never imports `recorder`, `trigger` or `worker`.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, NoReturn

import click
import redis

from common import log, version
from common.redisconn import connect, wait_for_redis
from common.settings import LOG_FORMATS, Settings, SettingsError, load_settings

ENTRY_POINT_GROUP = "gravanois.commands"


class PluginGroup(click.Group):
    """A group whose commands come from entry points, imported on first use."""

    def _entry_points(self) -> dict[str, Any]:
        return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._entry_points()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None:
            return cmd
        ep = self._entry_points().get(cmd_name)
        if ep is None:
            return None
        try:
            loaded: click.Command = ep.load()
        except (ImportError, AttributeError):
            return None
        return loaded


@click.group(cls=PluginGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--env-file",
    default=".env",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Settings file (GN_* lines); the environment beats it, flags beat both.",
)
@click.option("--device-id", help="Override GN_DEVICE_ID.")
@click.option("--redis-url", help="Override GN_REDIS_URL.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Override GN_DATA_DIR.")
@click.option(
    "--buffer-dir", type=click.Path(file_okay=False, path_type=Path), help="Override GN_BUFFER_DIR."
)
@click.option("--log-level", help="Override GN_LOG_LEVEL.")
@click.option("--log-format", type=click.Choice(LOG_FORMATS), help="Override GN_LOG_FORMAT.")
@click.version_option(message="%(prog)s " + version.describe(), package_name=version.DISTRIBUTION)
@click.pass_context
def cli(ctx: click.Context, env_file: str, **overrides: Any) -> None:
    """Grava Nóis Capture: record the court all the time, turn a button press into a highlight.

    \b
    Processes (supervisord runs these):  recorder, trigger listen, scheduler, ahead, worker, web
    Operators:                           status, failed, metrics, trigger press, camera probe
    First run:                           demo
    """
    ctx.ensure_object(dict)
    ctx.obj["env_file"] = env_file
    ctx.obj["overrides"] = {k: v for k, v in overrides.items() if v is not None}


def settings_from(ctx: click.Context, process: str | None = None, **overrides: Any) -> Settings:
    """Settings for a subcommand (its flags > group flags > env > .env > defaults); logging set up.

    A bad setting ends the process here with one clear line and exit code 2.
    """
    root = ctx.find_root()
    obj = root.obj or {}
    merged = {**obj.get("overrides", {}), **{k: v for k, v in overrides.items() if v is not None}}
    try:
        settings = load_settings(merged, env_file=obj.get("env_file", ".env"))
    except SettingsError as exc:
        fail(str(exc))
    for secret in settings.secrets():
        log.register_secret(secret)
    log.setup_logging(process or ctx.command_path.replace(" ", "-"), settings.log_level, settings.log_format)
    return settings


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `error: message` on stderr and exit with `code` (an operator error, not a bug)."""
    click.echo(f"error: {log.redact(message)}", err=True)
    sys.exit(code)


def redis_or_fail(settings: Settings, wait: float) -> redis.Redis:
    """A connection to the box's Redis once it answers; after `wait` s without one, one line and exit 1."""
    conn = connect(settings)
    if not wait_for_redis(conn, wait):
        fail(f"Redis at GN_REDIS_URL is not answering after {wait:g} s: start redis-server or fix the URL", 1)
    return conn


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="gravanois")


if __name__ == "__main__":
    main()
