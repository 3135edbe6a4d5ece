"""What the box says about itself on `presence`, `heartbeat` and `state`, from what `gravanois status`
sees (ops.snapshot.snapshot): the same facts in the contract's shape, so the fleet and the venue agree."""

from __future__ import annotations

import shutil
import socket
import time
from typing import Any

from common.settings import Settings
from common.timeutil import iso
from common.version import describe as version_text
from common.version import package_version, release_dir
from ops.fleet import contract
from ops.snapshot import snapshot


def envelope(settings: Settings, **fields: Any) -> dict[str, Any]:
    """The fields every message from the box carries (its time under the name the topic uses)."""
    return {
        "device_id": settings.device_id,
        "client_id": settings.client_id,
        "venue_id": settings.venue_id,
        "agent_version": agent_version(),
        **fields,
    }


def agent_version() -> str:
    """The release the agent runs (its version where it is not an installed release)."""
    release = release_dir()
    return release.name if release else package_version()


def presence(settings: Settings, status: str, queue_size: int, healthy: bool | None) -> dict[str, Any]:
    """`presence` (retained) and `heartbeat`: online/offline, when, and a one-word health."""
    now = iso()
    return envelope(
        settings,
        timestamp=now,
        status=status,
        last_seen=now,
        hostname=socket.gethostname(),
        queue_size=queue_size,
        health=None if healthy is None else ("ok" if healthy else "attention"),
    )


def _camera(cam: dict[str, Any], t: float) -> dict[str, Any]:
    age = cam.get("last_segment_age")
    status = "recording" if cam["recording"] else ("offline" if cam["state"] == "absent" else cam["state"])
    return {
        "id": cam["id"],
        "name": cam.get("name") or cam["id"],
        "camera_status": status,
        "buffer_fresh": bool(cam["recording"]),
        "segment_age_sec": age,
        "last_segment_at": iso(t - age) if age is not None else None,
        "restart_attempts": cam.get("restarts_last_hour", 0),
        "last_error": cam.get("last_error"),
    }


def _disks(snap: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, disk in snap["disk"].items():
        try:
            usage = shutil.disk_usage(disk["path"])
            total, free = usage.total, usage.free
        except OSError:
            total, free = None, None
        out[name] = {"free_bytes": free, "total_bytes": total, "low": disk["low"]}
    return out


def state(settings: Settings, settings_hash: str, started: float) -> tuple[dict[str, Any], bool]:
    """The `state` message's content (without its time) and whether the box is healthy."""
    snap = snapshot(settings)
    t = time.time()
    queues = snap.get("queues", {})
    disks = _disks(snap)
    health = {
        "disks": disks,
        "storage_status": "low" if any(d["low"] for d in disks.values()) else "ok",
        "failed_count": sum(q.get("failed", 0) for q in queues.values()),
        "upload_failed_count": queues.get("upload", {}).get("failed", 0),
        "queues": {stage: q.get("queued", 0) for stage, q in queues.items()},
        "alarms": sorted(snap.get("alarms", {})),
        "redis_ok": snap["redis"]["ok"],
        "attention": snap["attention"],
    }
    runtime = {
        "version": version_text(),
        "release": snap.get("release", {}).get("running"),
        "uptime_sec": int(t - started),
        "settings_hash": settings_hash,
    }
    cameras = [_camera(c, t) for c in snap["cameras"] if c.get("configured", True)]
    # The render budget's decision, measured costs and expected waits (ops/budget.py), as status shows it.
    render = snap.get("budget")
    return {"cameras": cameras, "health": health, "runtime": runtime, "render": render}, bool(snap["ok"])


def fingerprint(content: dict[str, Any]) -> str:
    """What `state` says, without what changes every second (ages), to send it again only on change."""
    quiet = {
        **content,
        "cameras": [
            {k: v for k, v in c.items() if k not in ("segment_age_sec", "last_segment_at")}
            for c in content["cameras"]
        ],
        "health": {
            **content["health"],
            "disks": {n: d["low"] for n, d in content["health"]["disks"].items()},
        },
        "runtime": {k: v for k, v in content["runtime"].items() if k != "uptime_sec"},
    }
    return contract.config_hash(quiet)
