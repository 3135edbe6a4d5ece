"""The render budget as `status` and the dashboard show it: the decision the box made (worker/budget.py
publishes it), each camera's measured cost and expected wait after the post-roll."""

from __future__ import annotations

from typing import Any

import redis

from common.settings import Settings
from common.timeutil import iso
from worker import budget


def view(settings: Settings, conn: redis.Redis) -> dict[str, Any]:
    """The published budget for a snapshot: {"measured": False} before the first measurement."""
    data = budget.read(conn, settings.device_id)
    if data is None:
        return {"measured": False}
    decision = data.get("decision") or {}
    box = decision.get("box") or {}
    return {
        "measured": True,
        "measured_at": iso(data["measured_at"]) if data.get("measured_at") else None,
        "cpus": box.get("cpus"),
        "reserve": box.get("reserve"),
        "continuous": decision.get("continuous"),
        "load": decision.get("load"),
        "fits": decision.get("fits"),
        "hardware": data.get("hardware"),
        "streams": data.get("streams") or {},
        "costs": data.get("costs") or {},
        "cameras": decision.get("cameras") or {},
        "held_from": decision.get("held_from") or {},  # the options in force when it was decided
        "error": decision.get("error"),
    }


def lines(view: dict[str, Any] | None) -> list[str]:
    """The budget's lines of `gravanois status`."""
    if view is None:
        return ["render budget: unknown (Redis down)"]
    if not view["measured"]:
        return ["render budget: not measured yet (the ahead encoder's process measures it at its start)"]
    if view.get("error"):
        return [f"render budget: REFUSED ({view['error']})"]
    head = (
        f"render budget: {view['cpus']:g} CPU, {view['reserve']:.0%} kept in reserve, "
        f"{view['continuous']:g} CPU taken all the time, {view['load']:g} at a busy court; "
        f"measured {view['measured_at']}"
    )
    over = (
        ["OVER BUDGET: the cameras need more CPU than the box has; highlights come late at a busy court"]
        if view.get("fits") is False
        else []
    )
    rows = [
        ["CAMERA", "STREAM", "PATH", "ENCODER", "SIZE", "CPU-S/S", "WAIT AFTER POST-ROLL"],
        *(
            [
                cam,
                view["streams"].get(cam, "?"),
                c["path"],
                c["encoder"],
                c["size"],
                f"{c['cost']:.3f}",
                f"~{c['wait']:.1f} s",
            ]
            for cam, c in sorted(view["cameras"].items())
        ),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    table = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return [head, *over, *table]
