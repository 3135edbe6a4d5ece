"""The company's backend as the fleet tests play it: a real MQTT client of the test broker that records
what a box publishes and sends it signed desired configs, config requests and commands.

Signatures are made and checked here with the test's own code, written from shared/FLEET_API.md, not
with the box's (ops/fleet/contract.py): a mistake in the box's signing cannot hide behind itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt

from harness.mosquitto import BACKEND_PASSWORD, BACKEND_USER, Mosquitto

# The canonical fields of each signed message, in the contract's order.
CANONICAL = {
    "capture/events": (
        "type",
        "event_id",
        "device_id",
        "client_id",
        "venue_id",
        "camera_id",
        "trigger_id",
        "trigger_source",
        "reason",
        "occurred_at",
    ),
    "config/reported": (
        "v1",
        "CONFIG_REPORTED",
        "device_id",
        "config_version",
        "correlation_id",
        "reported_at",
        "status",
        "reported_hash",
    ),
    "config/state": (
        "v1",
        "CONFIG_STATE",
        "device_id",
        "config_version",
        "request_id",
        "reported_at",
        "reported_hash",
    ),
    "commands/out": ("v1", "COMMAND_RESULT", "device_id", "command_id", "status", "reported_at"),
}


def when(offset: float = 0.0) -> str:
    """UTC ISO-8601 with Z, `offset` seconds from now."""
    t = datetime.now(UTC) + timedelta(seconds=offset)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def jcanon(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def field(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return str(int(value))
    return str(value)


def hmac_b64(secret: str, text: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()).decode()


def signature_ok(secret: str, topic_suffix: str, message: dict[str, Any]) -> bool:
    """Whether a box's message carries a valid signature (checked with this module's own code)."""
    parts = [p if p in ("v1",) or p.isupper() else field(message.get(p)) for p in CANONICAL[topic_suffix]]
    return message.get("signature_version") == "hmac-sha256-v1" and hmac.compare_digest(
        hmac_b64(secret, ":".join(parts)), str(message.get("signature"))
    )


class Backend:
    """Subscribed to `grn/devices/{device}/#`; keeps each message as (topic in the device, JSON, retained)."""

    def __init__(self, broker: Mosquitto, device: str, secret: str) -> None:
        self.device, self.secret = device, secret
        self.messages: list[tuple[str, dict[str, Any], bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"backend-{uuid.uuid4().hex[:8]}"
        )
        self.client.username_pw_set(BACKEND_USER, BACKEND_PASSWORD)
        self.client.on_message = self._message
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe(f"grn/devices/{device}/#", qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        if broker.ca_file is not None:
            self.client.tls_set(ca_certs=str(broker.ca_file))
        self.client.connect("127.0.0.1", broker.port, keepalive=10)
        self.client.loop_start()
        assert self.subscribed.wait(10), "the backend's client could not subscribe"

    def _message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        suffix = msg.topic.split(f"grn/devices/{self.device}/", 1)[-1]
        try:
            body = json.loads(msg.payload) if msg.payload else {}
        except ValueError:
            body = {"raw": msg.payload.decode(errors="replace")}
        with self.lock:
            self.messages.append((suffix, body, bool(msg.retain)))

    def on(self, suffix: str) -> list[dict[str, Any]]:
        with self.lock:
            return [m for t, m, _ in self.messages if t == suffix]

    def wait(
        self, suffix: str, check: Callable[[dict[str, Any]], bool] = lambda m: True, timeout: float = 30
    ) -> dict[str, Any]:
        """The first message on that topic (since the backend subscribed) that passes `check`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [m for m in self.on(suffix) if check(m)]
            if found:
                return found[0]
            time.sleep(0.1)
        raise AssertionError(
            f"no {suffix} message as expected within {timeout} s; got {self.on(suffix)[-3:]}"
        )

    def publish(self, suffix: str, message: dict[str, Any], retain: bool = False) -> None:
        """On this device's topic (a message may still name another device: the box must refuse it)."""
        topic = f"grn/devices/{self.device}/{suffix}"
        self.client.publish(topic, json.dumps(message), qos=1, retain=retain).wait_for_publish(10)

    def desired(
        self,
        version: int,
        config: dict[str, Any],
        expires_in: float = 120,
        secret: str | None = None,
        device: str | None = None,
        desired_hash: str | None = None,
    ) -> dict[str, Any]:
        """A signed `config/desired` (retained, as the backend sends it)."""
        m: dict[str, Any] = {
            "device_id": device or self.device,
            "config_version": version,
            "correlation_id": str(uuid.uuid4()),
            "issued_at": when(),
            "expires_at": when(expires_in),
            "schema_version": 1,
            "desired_config": config,
            "desired_hash": desired_hash or "sha256:" + hashlib.sha256(jcanon(config)).hexdigest(),
            "signature_version": "hmac-sha256-v1",
        }
        keys = ("device_id", "config_version", "correlation_id", "issued_at", "expires_at", "desired_hash")
        m["signature"] = hmac_b64(
            secret or self.secret, ":".join(["v1", "CONFIG_DESIRED", *(field(m[k]) for k in keys)])
        )
        self.publish("config/desired", m, retain=True)
        return m

    def command(
        self,
        name: str,
        args: dict[str, Any] | None = None,
        expires_in: float = 120,
        secret: str | None = None,
        device: str | None = None,
        command_id: str | None = None,
    ) -> dict[str, Any]:
        """A signed `commands/in`."""
        args = args or {}
        m: dict[str, Any] = {
            "device_id": device or self.device,
            "command_id": command_id or str(uuid.uuid4()),
            "name": name,
            "args": args,
            "issued_at": when(),
            "expires_at": when(expires_in),
            "signature_version": "hmac-sha256-v1",
        }
        keys = ("device_id", "command_id", "name", "issued_at", "expires_at")
        text = ":".join(
            ["v1", "COMMAND", *(field(m[k]) for k in keys), hashlib.sha256(jcanon(args)).hexdigest()]
        )
        m["signature"] = hmac_b64(secret or self.secret, text)
        self.publish("commands/in", m)
        return m

    def request(self, secret: str | None = None) -> dict[str, Any]:
        """A signed `config/request`."""
        m = {"device_id": self.device, "request_id": str(uuid.uuid4()), "requested_at": when()}
        text = ":".join(["v1", "CONFIG_REQUEST", m["device_id"], m["request_id"], m["requested_at"]])
        m["signature_version"] = "hmac-sha256-v1"
        m["signature"] = hmac_b64(secret or self.secret, text)
        self.publish("config/request", m)
        return m

    def result(self, command_id: str, status: str, timeout: float = 60) -> dict[str, Any]:
        """The box's answer with this status to a command, its signature checked."""
        m = self.wait(
            "commands/out", lambda m: m.get("command_id") == command_id and m.get("status") == status, timeout
        )
        assert signature_ok(self.secret, "commands/out", m), m
        return m

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def device_on(broker: Mosquitto, prefix: str, secret: str, heartbeat: float) -> dict[str, str]:
    """A new device's MQTT user on `broker` (restarted to read its password file) and the settings that put
    a box on it, as that device."""
    device = f"{prefix}-{uuid.uuid4().hex[:8]}"
    broker.user(device, "box-pw")
    broker.stop()
    broker.start()
    return {
        "GN_DEVICE_ID": device,
        "GN_MQTT_URL": broker.url(device, "box-pw"),
        "GN_MQTT_HEARTBEAT_SECONDS": str(heartbeat),
        "GN_DEVICE_SECRET": secret,
        "GN_CLIENT_ID": "client-1",
        "GN_VENUE_ID": "venue-1",
    }
