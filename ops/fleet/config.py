"""Settings set from the fleet: `config/desired` checked, persisted and applied; `config/request` answered.

A desired config is refused (reported `rejected`, with one of REASONS and a safe detail) when its
signature is not the device's, it names another device, it has expired, its version is not above the
last one applied (a replay), its hash does not match its settings, it names a setting that may not be
set remotely (docs/fleet.md lists those that may; never a secret, never a URL with credentials), or a
value fails the box's own validation (the same code that checks `.env`). Else it is written to the data
folder's remote settings file (common/settings/remote.py: it survives reboots and beats `.env`), and
reported `applied` when every change takes effect at once (LIVE settings), or `pending_restart` until
the programs have restarted at a quiet moment (no build running, no press waiting for its post-roll).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.log import redact
from common.settings import Settings, SettingsError, env_name, load_settings, to_env
from common.settings import remote as remote_file
from common.settings.core import FIELDS
from common.settings.fields import LIVE, rule_of
from common.timeutil import iso, parse_iso
from ops.fleet import contract


class Reason:
    """Why a desired config (or a command) is refused: the words on `config/reported`."""

    SIGNATURE = "bad_signature"
    DEVICE = "wrong_device"
    EXPIRED = "expired"
    REPLAY = "replay"
    HASH = "hash_mismatch"
    NOT_SETTABLE = "not_remotely_settable"
    INVALID = "invalid_value"
    MALFORMED = "malformed"


# Settings the fleet may set, by GN name: how each takes effect (LIVE or RESTART).
SETTABLE = {env_name(f.name): rule_of(f).remote for f in FIELDS if rule_of(f).remote}


class Refused(Exception):
    """A message the box will not act on: `reason` (one of Reason) and a detail safe to publish."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def check_envelope(settings: Settings, message: dict[str, Any], which: contract.Topic) -> None:
    """The checks every signed message to the box passes first: signature, device, expiry."""
    if not isinstance(message, dict):
        raise Refused(Reason.MALFORMED, "not a JSON object")
    if not contract.is_signed_by(settings.device_secret, which, message):
        raise Refused(Reason.SIGNATURE)
    if message.get("device_id") != settings.device_id:
        raise Refused(Reason.DEVICE, f"for {str(message.get('device_id'))[:64]!r}")
    expires = message.get("expires_at")
    if expires is not None:
        try:
            expired = parse_iso(str(expires)) < time.time()
        except ValueError:
            raise Refused(Reason.MALFORMED, "expires_at is not an ISO 8601 time") from None
        if expired:
            raise Refused(Reason.EXPIRED, f"expired at {expires}")


def effective(settings: Settings) -> dict[str, str]:
    """The settings as the box runs them, for `config/state`: no secret, credentials out of URLs."""
    secrets = {env_name(f.name) for f in FIELDS if rule_of(f).secret}
    return {name: redact(value) for name, value in to_env(settings).items() if name not in secrets}


@dataclass
class Applied:
    """The outcome of a desired config: its status and what `config/reported` says."""

    status: str  # applied | pending_restart | rejected
    version: Any = None
    correlation_id: Any = None
    reason: str = ""
    detail: str = ""
    restart_fields: list[str] = field(default_factory=list)


class RemoteConfig:
    """The desired config a box accepted (in its remote settings file) and how to take a new one."""

    def __init__(self, settings: Settings, env_file: Path | None) -> None:
        self.settings = settings
        self.env_file = env_file
        self.path = remote_file.path_in(settings.data_dir)
        # What the programs were last started with: a RESTART setting differing from it is pending.
        self.running = settings

    def record(self) -> dict[str, Any]:
        return remote_file.read(self.path)

    def version(self) -> int:
        """The version of the last desired config applied (0: none)."""
        value = self.record().get("config_version", 0)
        return value if isinstance(value, int) else 0

    def reported_hash(self) -> str:
        """The hash of the settings the fleet set, as applied (`reported_hash`)."""
        return contract.config_hash(self.record().get("settings", {}))

    def take(self, message: dict[str, Any]) -> Applied:
        """Check and apply a `config/desired` message; the outcome to report."""
        version, correlation = message.get("config_version"), message.get("correlation_id")
        try:
            check_envelope(self.settings, message, contract.Topic.CONFIG_DESIRED)
            desired = message.get("desired_config")
            if not isinstance(version, int) or not isinstance(desired, dict):
                raise Refused(
                    Reason.MALFORMED, "config_version must be a whole number, desired_config an object"
                )
            if version == self.version() and message.get("desired_hash") == self.record().get("desired_hash"):
                return self.now_status(version, correlation)  # the retained message again, after a reconnect
            if version <= self.version():
                raise Refused(Reason.REPLAY, f"version {version} is not above {self.version()}")
            if message.get("desired_hash") != contract.config_hash(desired):
                raise Refused(Reason.HASH)
            refused = sorted(name for name in desired if name not in SETTABLE)
            if refused:
                raise Refused(Reason.NOT_SETTABLE, ", ".join(str(n)[:64] for n in refused[:5]))
            candidate = self.validated(desired)
        except Refused as exc:
            return Applied("rejected", version, correlation, exc.reason, exc.detail)
        remote_file.write(
            self.path,
            {
                "config_version": version,
                "correlation_id": correlation,
                "desired_hash": message.get("desired_hash"),
                "settings": desired,
                "applied_at": iso(),
            },
        )
        self.settings = candidate
        return self.now_status(version, correlation)

    def validated(self, desired: dict[str, Any]) -> Settings:
        """The settings the box would run with `desired` in force, checked by the settings' own rules."""
        overrides = {}
        for name, value in desired.items():
            f = next(f for f in FIELDS if env_name(f.name) == name)
            overrides[f.name] = remote_file.as_text(value)
        try:
            # The desired config replaces the previous one whole: load without the current file.
            base = load_settings(env_file=self.env_file, remote=False)
            return load_settings(
                {**overrides, "data_dir": base.data_dir}, env_file=self.env_file, remote=False
            )
        except SettingsError as exc:
            raise Refused(Reason.INVALID, redact(str(exc))) from None

    def now_status(self, version: Any, correlation: Any) -> Applied:
        """applied, or pending_restart while a setting that needs one differs from what the programs run."""
        pending = self.pending()
        status = "pending_restart" if pending else "applied"
        return Applied(status, version, correlation, restart_fields=pending)

    def pending(self) -> list[str]:
        """The settings the programs do not run with yet (they need a restart)."""
        return [
            env_name(f.name)
            for f in FIELDS
            if rule_of(f).remote != LIVE and getattr(self.settings, f.name) != getattr(self.running, f.name)
        ]

    def restarted(self) -> None:
        """The programs restarted: they run the settings now in force."""
        self.running = self.settings

    def reported(self, outcome: Applied) -> dict[str, Any]:
        """The `config/reported` message for an outcome (signed by the agent)."""
        body: dict[str, Any] = {
            "config_version": outcome.version,
            "correlation_id": outcome.correlation_id,
            "reported_at": iso(),
            "status": outcome.status,
            "reported_hash": self.reported_hash(),
        }
        if outcome.reason:
            body["reason"] = outcome.reason + (f": {outcome.detail}" if outcome.detail else "")
        if outcome.restart_fields:
            body["pending"] = outcome.restart_fields
        return body

    def state(self, request: dict[str, Any]) -> dict[str, Any]:
        """The `config/state` message answering a `config/request` (its signature checked first)."""
        check_envelope(self.settings, request, contract.Topic.CONFIG_REQUEST)
        return {
            "config_version": self.version(),
            "request_id": request.get("request_id"),
            "reported_at": iso(),
            "reported_hash": self.reported_hash(),
            "settings": effective(self.settings),
            "remotely_settable": SETTABLE,
            "pending_restart": self.pending(),
        }


def settings_hash(settings: Settings) -> str:
    """A digest of the effective settings (`state`'s `runtime.settings_hash`)."""
    return contract.config_hash(effective(settings))
