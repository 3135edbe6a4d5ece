"""Fleet: the company's MQTT broker, which the fleet agent (`gravanois agent`) reports to and takes
remote settings and commands from (shared/FLEET_API.md, docs/fleet.md). Off while GN_MQTT_URL is empty."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.settings.fields import Concern, setting, url


@dataclass(frozen=True)
class FleetSettings(Concern):
    """The broker and its TLS files, how often the box reports, what it keeps while the broker is away."""

    title = "Fleet: the company's MQTT broker"

    mqtt_url: str = setting(
        "",
        "Broker, mqtts://USER:PASSWORD@HOST:PORT (mqtt:// on loopback tests only; empty: no fleet agent).",
        check=url("mqtt://", "mqtts://", like="mqtts://box-17:secret@mqtt.example.com:8883", optional=True),
    )
    mqtt_ca_file: Path | None = setting(
        None, "CA certificate (PEM) the broker's certificate is checked against (empty: the system's CAs)."
    )
    mqtt_cert_file: Path | None = setting(None, "Client certificate (PEM), if the broker asks for one.")
    mqtt_key_file: Path | None = setting(None, "Key of the client certificate (PEM).")
    mqtt_keepalive: int = setting(
        30, "MQTT keepalive in seconds (the last will fires after 1.5 x this).", at_least=5
    )
    mqtt_heartbeat_seconds: float = setting(
        30.0, "Seconds between heartbeats (and between looks at the box's state).", above=0, unit="seconds"
    )
    mqtt_state_seconds: float = setting(
        300.0, "The full state is sent on every change and at least this often.", above=0, unit="seconds"
    )
    fleet_outbox_max: int = setting(
        10000, "Events kept while the broker is away; beyond, the oldest go (counted).", at_least=10
    )

    @property
    def fleet_enabled(self) -> bool:
        """The agent runs, and processes hand it events, only when a broker is configured."""
        return bool(self.mqtt_url)
