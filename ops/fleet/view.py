"""`gravanois fleet`: every box of a (small) fleet on one page, live, from the broker alone.

It subscribes to `grn/devices/+/…` like the company's backend does (it is a reference consumer of the
contract, not a replacement for the backend) and keeps, per box, what its retained `presence` and
`state` and its events say: online or offline and since when, version, each camera's state and buffer
age, disks, failed highlights, the last highlight, alarms. The page (same web stack as the box's app)
gets the whole table once and then every change through server-sent events; its columns sort.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import click
import paho.mqtt.client as mqtt
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.routing import Route

from common.timeutil import iso
from ops.fleet import contract
from ops.fleet.agent import broker_of

PAGE = Path(__file__).with_name("view.html")
# Seconds between two looks at the table for changes, per open page.
PUSH_EVERY = 0.25


class Fleet:
    """What the broker says about every box, kept up to date by an MQTT client's thread."""

    def __init__(self) -> None:
        self.boxes: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.version = 0

    def take(self, topic_name: str, payload: bytes) -> None:
        """One message from the broker."""
        found = contract.parse_topic(topic_name)
        if found is None:
            return
        device, which = found
        try:
            message = json.loads(payload) if payload else {}
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        with self.lock:
            box = self.boxes.setdefault(device, {"device_id": device, "status": "unknown", "since": None})
            if which in (contract.Topic.PRESENCE, contract.Topic.HEARTBEAT):
                self._presence(box, message)
            elif which is contract.Topic.STATE:
                self._state(box, message)
            elif which is contract.Topic.EVENTS:
                self._event(box, message)
            else:
                return
            box["updated"] = time.time()
            self.version += 1

    @staticmethod
    def _presence(box: dict[str, Any], m: dict[str, Any]) -> None:
        status = m.get("status", "unknown")
        if status != box.get("status"):
            box["since"] = m.get("timestamp") or iso()
        box.update(
            status=status,
            last_seen=m.get("last_seen") or box.get("last_seen"),
            version=m.get("agent_version"),
            venue_id=m.get("venue_id"),
            health=m.get("health"),
            queue_size=m.get("queue_size"),
        )

    @staticmethod
    def _state(box: dict[str, Any], m: dict[str, Any]) -> None:
        health = m.get("health") or {}
        box.update(
            cameras=[
                {
                    "id": c.get("id"),
                    "name": c.get("name"),
                    "status": c.get("camera_status"),
                    "age": c.get("segment_age_sec"),
                }
                for c in m.get("cameras") or []
            ],
            disks={
                n: {"free": d.get("free_bytes"), "total": d.get("total_bytes"), "low": d.get("low")}
                for n, d in (health.get("disks") or {}).items()
            },
            failed=health.get("failed_count"),
            alarms=health.get("alarms") or [],
            release=(m.get("runtime") or {}).get("release"),
            version=m.get("agent_version") or box.get("version"),
            state_at=m.get("reported_at"),
        )

    @staticmethod
    def _event(box: dict[str, Any], m: dict[str, Any]) -> None:
        kind = m.get("type")
        if kind in ("highlight.done", "highlight.uploaded"):
            box["last_highlight"] = {
                "at": m.get("occurred_at"),
                "trigger_id": m.get("trigger_id"),
                "camera": m.get("camera_id"),
            }
        if kind == "highlight.failed":
            box["last_failure"] = {"at": m.get("occurred_at"), "reason": m.get("reason")}

    def table(self) -> dict[str, Any]:
        with self.lock:
            return {
                "version": self.version,
                "time": iso(),
                "boxes": sorted(self.boxes.values(), key=lambda b: b["device_id"]),
            }


def listen(fleet: Fleet, broker_url: str, ca_file: Path | None = None) -> mqtt.Client:
    """An MQTT client feeding `fleet` (its own network thread)."""
    host, port, tls, user, password = broker_of(broker_url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"fleet-view-{uuid.uuid4().hex[:8]}")
    if user is not None:
        client.username_pw_set(user, password)
    if tls:
        client.tls_set(ca_certs=str(ca_file) if ca_file else None)
    topics = [contract.Topic.PRESENCE, contract.Topic.HEARTBEAT, contract.Topic.STATE, contract.Topic.EVENTS]

    def on_connect(c: mqtt.Client, *_: Any) -> None:
        c.subscribe([(f"{contract.TOPIC_ROOT}/+/{t.value}", 1) for t in topics])

    client.on_connect = on_connect
    client.on_message = lambda _c, _u, msg: fleet.take(msg.topic, bytes(msg.payload))
    client.reconnect_delay_set(1, 10)
    client.connect_async(host, port, keepalive=30)
    client.loop_start()
    return client


# Seconds open pages get to go when the view is stopped (supervisord's stop window is longer).
SHUTDOWN_GRACE = 2


def make_app(fleet: Fleet) -> Starlette:
    """The page, the table as JSON, and its changes as server-sent events."""

    async def page(_request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    async def boxes(_request: Request) -> JSONResponse:
        return JSONResponse(fleet.table())

    async def changes(request: Request) -> StreamingResponse:
        async def stream() -> AsyncIterator[str]:
            seen = -1
            while not await request.is_disconnected():
                if fleet.version != seen:
                    table = fleet.table()
                    seen = table["version"]
                    yield f"data: {json.dumps(table)}\n\n"
                await asyncio.sleep(PUSH_EVERY)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    return Starlette(routes=[Route("/", page), Route("/boxes", boxes), Route("/changes", changes)])


@click.command()
@click.option(
    "--broker",
    "broker_url",
    required=True,
    envvar="GN_FLEET_BROKER",
    help="mqtt(s)://USER:PASSWORD@HOST:PORT of a user that may read every box's topics.",
)
@click.option(
    "--ca-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="CA certificate of the broker (mqtts://).",
)
@click.option("--bind", default="127.0.0.1", show_default=True, help="Address the page is served on.")
@click.option("--port", default=8090, show_default=True, help="Port the page is served on.")
def fleet(broker_url: str, ca_file: Path | None, bind: str, port: int) -> None:
    """A live page of every box the broker knows (docs/fleet.md): for a small fleet and for checking."""
    state = Fleet()
    listen(state, broker_url, ca_file)
    # A page left open keeps its stream of changes open: SIGTERM closes it rather than waiting for it.
    uvicorn.run(
        make_app(state), host=bind, port=port, log_level="warning", timeout_graceful_shutdown=SHUTDOWN_GRACE
    )
