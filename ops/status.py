"""`gravanois status`: the box's snapshot (ops.snapshot) as tables for a terminal, or `--json`.

It exits non-zero when something needs attention (ops.attention), so it doubles as a health check.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from common.cli import settings_from
from ops import budget as budget_view
from ops.snapshot import RECENT_HIGHLIGHTS, snapshot


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot as JSON (for machines).")
@click.option(
    "--highlights", "n", default=RECENT_HIGHLIGHTS, show_default=True, help="Recent highlights shown."
)
@click.pass_context
def status(ctx: click.Context, as_json: bool, n: int) -> None:
    """Show cameras, queues, recent highlights, disks, alarms and counters.

    Exits 1 when something needs attention (a camera not recording, Redis down, failed jobs, a queue
    nobody serves, a disk low, an alarm), so it also serves as a health check.
    """
    settings = settings_from(ctx, process="status")
    snap = snapshot(settings, highlights=n)
    click.echo(json.dumps(snap, indent=2) if as_json else render_text(snap))
    sys.exit(0 if snap["ok"] else 1)


def render_text(snap: dict[str, Any]) -> str:
    """The snapshot as tables for a terminal."""
    out = [
        f"device {snap['device']}  at {snap['time']}  redis {snap['redis']['url']}: "
        + ("ok" if snap["redis"]["ok"] else f"DOWN ({snap['redis'].get('error', '')})"),
        _release_line(snap["release"]),
        "",
    ]
    cams = [
        [
            c["id"] if c["name"] == c["id"] else f"{c['id']} ({c['name']})",
            {True: "yes", False: "NO", None: "?"}[c["recording"]]
            + ("" if c["configured"] else " (not configured)"),
            c["state"],
            _fmt(c["last_segment_age"], " s"),
            _fmt(c["buffered_seconds"], " s"),
            _fmt(c["keyframe_interval"], " s"),
            _fmt(c["restarts_last_hour"]),
            c["last_error"] or "",
        ]
        for c in snap["cameras"]
    ]
    out += _table(
        ["CAMERA", "RECORDING", "STATE", "LAST SEG AGE", "BUFFERED", "KEYFRAME", "RESTARTS/1H", "ERROR"], cams
    )
    out.append("")
    qrows = []
    for stage, q in snap["queues"].items():
        progress = ", ".join(
            f"{j['id']} {_fmt(j['progress'], '%')}" for j in q["running_jobs"] if j["progress"] is not None
        )
        qrows.append(
            [
                stage,
                str(q["scheduled"]),
                str(q["queued"]),
                str(q["running"]),
                str(q["failed"]),
                str(q["workers"]),
                progress,
            ]
        )
    out += _table(["QUEUE", "SCHEDULED", "QUEUED", "RUNNING", "FAILED", "WORKERS", "PROGRESS"], qrows)
    for f in snap["failed_jobs"]:
        out.append(f"  failed {f['stage']} {f['id']}: {f['error']}")
    out.append("")
    hrows = [
        [h["press_id"], h["at"], h.get("state", "-"), h.get("updated_at", "-")] for h in snap["highlights"]
    ]
    out += _table(["HIGHLIGHT", "PRESSED", "STATE", "UPDATED"], hrows)
    out.append("")
    out += _table(
        ["DISK", "FREE", "FLOOR", "PATH"],
        [
            [n, f"{d['free_mb']:.0f} MiB", f"{d['min_free_mb']} MiB", d["path"]]
            for n, d in snap["disk"].items()
        ],
    )
    out.append("")
    out.append(_ahead_line(snap.get("ahead")))
    out += budget_view.lines(snap.get("budget"))
    if snap["journal"]["pending"]:
        out.append(f"journal: {snap['journal']['pending']} press(es) not yet in Redis")
        out.append("")
    out.append("counters: " + "  ".join(f"{k}={v}" for k, v in snap["counters"].items()))
    out.append("")
    if snap["attention"]:
        out.append("NEEDS ATTENTION:")
        out += [f"  - {p}" for p in snap["attention"]]
    else:
        out.append("all good")
    return "\n".join(out)


def _release_line(release: dict[str, Any]) -> str:
    line = f"version {release['version']}, release {release['running'] or '(not an installed release)'}"
    update = release["update"]
    if update.get("phase") in ("trial", "rolling_back"):
        line += f"  (update to {update.get('to')} under way: {update['phase']})"
    elif update.get("phase") == "rolled_back":
        line += f"  (last update, to {update.get('to')}, rolled back: {update.get('reason', '')})"
    return line


def _ahead_line(ahead: dict[str, Any] | None) -> str:
    """One line on the ahead encoder."""
    if ahead is None:
        return "ahead encoder: unknown (Redis down)"
    if ahead["off"]:
        return f"ahead encoder: off ({ahead['off']})"
    if not ahead["running"]:
        return "ahead encoder: NOT RUNNING (start `gravanois ahead`; highlights come later after a post-roll)"
    cams = [
        f"{cam} cached until {_fmt(info['cached_age'], ' s')} ago" + (" (BEHIND)" if info["behind"] else "")
        for cam, info in sorted(ahead["cameras"].items())
    ]
    return "ahead encoder: running" + (": " + ", ".join(cams) if cams else "")


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return lines


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}{unit}"
    return f"{value}{unit}"
