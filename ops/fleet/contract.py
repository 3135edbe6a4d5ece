"""The fleet contract's wire format (shared/FLEET_API.md): topics, canonical JSON, signatures, envelopes.

Pure functions only: the agent, the fleet view, the tests and the bench all speak through these.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

TOPIC_ROOT = "grn/devices"
SIGNATURE_VERSION = "hmac-sha256-v1"


class Topic(StrEnum):
    """The topics under `grn/devices/{device_id}/`."""

    PRESENCE = "presence"
    HEARTBEAT = "heartbeat"
    STATE = "state"
    EVENTS = "capture/events"
    CONFIG_DESIRED = "config/desired"
    CONFIG_REPORTED = "config/reported"
    CONFIG_REQUEST = "config/request"
    CONFIG_STATE = "config/state"
    COMMANDS_IN = "commands/in"
    COMMANDS_OUT = "commands/out"


# What the box subscribes to (each signed by the backend with the device's secret).
INBOUND = (Topic.CONFIG_DESIRED, Topic.CONFIG_REQUEST, Topic.COMMANDS_IN)


def topic(device_id: str, which: Topic) -> str:
    """The full topic of one of a device's topics."""
    return f"{TOPIC_ROOT}/{device_id}/{which.value}"


def parse_topic(name: str) -> tuple[str, Topic] | None:
    """(device id, topic) of a full topic name, or None when it is not one of the contract's."""
    prefix = TOPIC_ROOT + "/"
    if not name.startswith(prefix) or "/" not in name[len(prefix) :]:
        return None
    device, rest = name[len(prefix) :].split("/", 1)
    try:
        return device, Topic(rest)
    except ValueError:
        return None


def canonical_json(value: Any) -> bytes:
    """Keys sorted, `,` and `:` with no spaces, UTF-8, non-ASCII not escaped."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def config_hash(config: dict[str, Any]) -> str:
    """`desired_hash` / `reported_hash`: "sha256:" + hex SHA-256 of the canonical JSON."""
    return "sha256:" + sha256_hex(canonical_json(config))


def _part(value: Any) -> str:
    """One field of a canonical string: missing/null empty, numbers as integers."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return str(int(value))
    return str(value)


def canonical(parts: Iterable[Any]) -> str:
    """Fields joined with `:` in the contract's order."""
    return ":".join(_part(p) for p in parts)


def sign(secret: str, parts: Iterable[Any]) -> str:
    """base64(HMAC-SHA256(device secret, canonical))."""
    mac = hmac.new(secret.encode(), canonical(parts).encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def verify(secret: str, signature: Any, parts: Iterable[Any]) -> bool:
    """Whether `signature` is the device's signature of these fields (constant-time comparison)."""
    return isinstance(signature, str) and hmac.compare_digest(sign(secret, parts), signature)


# ---- each message's canonical fields, in the contract's order


def event_parts(m: dict[str, Any]) -> list[Any]:
    keys = ("type", "event_id", "device_id", "client_id", "venue_id", "camera_id", "trigger_id")
    return [m.get(k) for k in (*keys, "trigger_source", "reason", "occurred_at")]


def desired_parts(m: dict[str, Any]) -> list[Any]:
    keys = ("device_id", "config_version", "correlation_id", "issued_at", "expires_at", "desired_hash")
    return ["v1", "CONFIG_DESIRED", *(m.get(k) for k in keys)]


def reported_parts(m: dict[str, Any]) -> list[Any]:
    keys = ("device_id", "config_version", "correlation_id", "reported_at", "status", "reported_hash")
    return ["v1", "CONFIG_REPORTED", *(m.get(k) for k in keys)]


def request_parts(m: dict[str, Any]) -> list[Any]:
    return ["v1", "CONFIG_REQUEST", m.get("device_id"), m.get("request_id"), m.get("requested_at")]


def config_state_parts(m: dict[str, Any]) -> list[Any]:
    keys = ("device_id", "config_version", "request_id", "reported_at", "reported_hash")
    return ["v1", "CONFIG_STATE", *(m.get(k) for k in keys)]


def args_sha256(args: Any) -> str:
    """Hex SHA-256 of the canonical JSON of a command's `args`."""
    return sha256_hex(canonical_json(args if args is not None else {}))


def command_parts(m: dict[str, Any]) -> list[Any]:
    keys = ("device_id", "command_id", "name", "issued_at", "expires_at")
    return ["v1", "COMMAND", *(m.get(k) for k in keys), args_sha256(m.get("args"))]


def result_parts(m: dict[str, Any]) -> list[Any]:
    keys = ("device_id", "command_id", "status", "reported_at")
    return ["v1", "COMMAND_RESULT", *(m.get(k) for k in keys)]


# The canonical fields of each signed topic (the ones a box sends and the ones it receives).
PARTS = {
    Topic.EVENTS: event_parts,
    Topic.CONFIG_DESIRED: desired_parts,
    Topic.CONFIG_REPORTED: reported_parts,
    Topic.CONFIG_REQUEST: request_parts,
    Topic.CONFIG_STATE: config_state_parts,
    Topic.COMMANDS_IN: command_parts,
    Topic.COMMANDS_OUT: result_parts,
}


def signed(secret: str, which: Topic, message: dict[str, Any]) -> dict[str, Any]:
    """`message` with `signature_version` and `signature` for its topic."""
    return {
        **message,
        "signature_version": SIGNATURE_VERSION,
        "signature": sign(secret, PARTS[which](message)),
    }


def is_signed_by(secret: str, which: Topic, message: dict[str, Any]) -> bool:
    """Whether a received message carries the device's valid signature for its topic."""
    return message.get("signature_version") == SIGNATURE_VERSION and verify(
        secret, message.get("signature"), PARTS[which](message)
    )
