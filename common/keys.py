"""Every Redis key and queue name the project creates, namespaced by device id.

Many boxes may share one Redis server, so everything lives under `gn:{device}:`.
"""

from __future__ import annotations

PREFIX = "gn"


def ns(device: str) -> str:
    """The namespace of one device."""
    return f"{PREFIX}:{device}"


def segments(device: str, camera: str) -> str:
    """ZSET of a camera's closed segments; member = segment JSON, score = wall-clock start."""
    return f"{ns(device)}:cam:{camera}:segments"


def pins(device: str, camera: str) -> str:
    """ZSET of pinned windows; member = `pin_id|start|end`, score = expiry (epoch s)."""
    return f"{ns(device)}:cam:{camera}:pins"


def camera_health(device: str, camera: str) -> str:
    """HASH with the recorder's health: state, last_segment_end, restarts, keyframe_interval, …"""
    return f"{ns(device)}:cam:{camera}:health"


def camera_restarts(device: str, camera: str) -> str:
    """ZSET of ffmpeg restart times (member and score = epoch s), trimmed to the last day."""
    return f"{ns(device)}:cam:{camera}:restarts"


def cameras(device: str) -> str:
    """SET of camera ids that have a recorder (for `status`)."""
    return f"{ns(device)}:cameras"


def cooldown(device: str, camera: str) -> str:
    """String set with NX + expiry while a camera's press cooldown runs."""
    return f"{ns(device)}:cam:{camera}:cooldown"


def counters(device: str) -> str:
    """HASH of monotonic counters (presses, clips_built, renders_ok, …)."""
    return f"{ns(device)}:counters"


def highlights(device: str) -> str:
    """ZSET of recent highlights; member = press id, score = press time."""
    return f"{ns(device)}:highlights"


def highlight(device: str, press_id: str) -> str:
    """HASH with one highlight's state and paths."""
    return f"{ns(device)}:highlight:{press_id}"


def alarms(device: str) -> str:
    """HASH of active alarms: name → JSON {message, since}."""
    return f"{ns(device)}:alarms"


def scheduler(device: str) -> str:
    """String held (with a short expiry) by the device's one running scheduler; value = its name."""
    return f"{ns(device)}:scheduler"


def ahead(device: str) -> str:
    """String (JSON, short expiry) the running ahead encoder renews: its name, time and cameras' state."""
    return f"{ns(device)}:ahead"


def restarting(device: str) -> str:
    """String (with an expiry) set while the box restarts its programs on purpose (an update); value =
    why. A recorder stopped or starting meanwhile is restarting, not gone: presses are still taken."""
    return f"{ns(device)}:restarting"


def upload_lock(device: str, press_id: str) -> str:
    """String set with NX + expiry while one upload job works on a highlight (no two register it)."""
    return f"{ns(device)}:upload:{press_id}:lock"


# Counters kept in the `counters` hash (shown by `gravanois status` and `gravanois metrics`).
COUNTERS = {
    "presses": "Button presses accepted",
    "presses_ignored": "Presses ignored (cooldown, closed hours)",
    "clips_built": "Raw highlight clips built",
    "builds_failed": "Build jobs that failed for good",
    "renders_ok": "Highlights rendered",
    "renders_failed": "Render jobs that failed for good",
    "ffmpeg_restarts": "Recorder ffmpeg restarts",
    "stalls": "Recorder stalls detected by the watchdog",
    "uploads_ok": "Highlights delivered to the backend",
    "uploads_failed": "Upload jobs that failed for good",
    "bytes_uploaded": "Bytes uploaded to the backend",
}
