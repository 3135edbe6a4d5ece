"""`gravanois web`: serve the web app with uvicorn, one process, at low CPU priority."""

from __future__ import annotations

import contextlib
import os

import click

from common.cli import settings_from
from common.log import event, get_logger

log = get_logger(__name__)

# The web app's nice value: the lowest priority that still gets a share of a busy CPU.
NICENESS = 19


def lower_priority() -> None:
    """Let recording, building and rendering have the CPU first, and still answer while they keep it busy.

    The lowest nice level, set before uvicorn starts any thread (every thread and child inherits it).
    Not the idle class (SCHED_IDLE): that answers nothing while every core is busy, and a box whose
    encoders cannot keep up would show a dead dashboard exactly when its operator needs it (measured: with
    the two cores of a test machine kept busy, the web app did not answer /healthz within 30 s).
    """
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, NICENESS)


@click.command()
@click.option("--bind", default=None, help="Override GN_WEB_BIND (address to listen on).")
@click.option("--port", type=int, default=None, help="Override GN_WEB_PORT.")
@click.pass_context
def web(ctx: click.Context, bind: str | None, port: int | None) -> None:
    """Serve the court pages, the courtside screen and the operator dashboard (docs/web.md).

    \b
    /                  the venue: every court with its newest highlights
    /c/<camera>        a court's highlights (live), /poster (QR code to print), /screen (kiosk)
    /h/<id>            one highlight: player, download, share
    /admin             the dashboard (only when GN_WEB_ADMIN_PASSWORD is set)
    """
    import uvicorn

    from ops.web.app import create_app

    settings = settings_from(ctx, process="web", web_bind=bind, web_port=port)
    lower_priority()
    app = create_app(settings)
    event(
        log,
        "web_start",
        bind=settings.web_bind,
        port=settings.web_port,
        dashboard=bool(settings.web_admin_password),
        press=settings.web_press,
    )
    config = uvicorn.Config(
        app,
        host=settings.web_bind,
        port=settings.web_port,
        # Plain asyncio + h11: no compiled extras to install on a Pi, and the smallest footprint.
        loop="asyncio",
        http="h11",
        ws="none",
        lifespan="off",
        access_log=False,
        log_config=None,
        server_header=False,
        # Phones on a venue Wi-Fi come and go: bound the open connections and idle keep-alives.
        limit_concurrency=200,
        timeout_keep_alive=10,
    )
    uvicorn.Server(config).run()
