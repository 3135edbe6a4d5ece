"""`gravanois agent`: the box's one connection to the company's MQTT broker (shared/FLEET_API.md).

It publishes a retained `presence` (with a last will saying offline), a `heartbeat`, a retained `state`
(on change and at least every GN_MQTT_STATE_SECONDS), and the events the box's processes left in the
events stream, in order, at least once (QoS 1, one at a time); it takes signed desired settings and
commands. The MQTT client (paho-mqtt) runs its network loop in a thread of its own; everything the
agent does with Redis, the settings or the box happens in its main loop and one command thread, so a
slow command never delays a heartbeat, and a broker that is slow or gone delays nothing but the agent.
"""

from __future__ import annotations

import json
import queue
import signal
import socket
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import click
import paho.mqtt.client as mqtt
import redis

from common import keys
from common.cli import fail, redis_or_fail, settings_from
from common.counters import incr
from common.log import event, get_logger, register_secret
from common.pipeline import Stage
from common.pipeline import queue as rq_queue
from common.redisconn import connect, text
from common.settings import Settings
from deploy.release import Layout, State
from ops.fleet import contract, report
from ops.fleet.commands import CommandFailed, Commands
from ops.fleet.config import Refused, RemoteConfig, settings_hash
from ops.fleet.outbox import Outbox
from ops.restart import Restarter

log = get_logger(__name__)

# Seconds between two turns of the main loop when no message comes from the broker (events go out within
# this of being added; a message from the broker is taken at once). The agent is idle most of the time.
TURN = 0.5
# Seconds a desired config that needs a restart waits between two looks for a quiet moment.
QUIET_EVERY = 1.0
# Seconds the clean stop waits for the retained "offline" presence to reach the broker.
GOODBYE_WAIT = 3.0


def broker_of(url: str) -> tuple[str, int, bool, str | None, str | None]:
    """(host, port, tls, username, password) of GN_MQTT_URL."""
    parts = urlsplit(url)
    tls = parts.scheme == "mqtts"
    port = parts.port or (8883 if tls else 1883)
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return parts.hostname or "127.0.0.1", port, tls, user, password


def connect_problem(settings: Settings) -> str:
    """Why this box cannot reach its broker, in one sentence: what a plain TCP connection and, for mqtts://,
    the TLS handshake with the same certificates say (the MQTT client does not tell)."""
    host, port, tls, _, _ = broker_of(settings.mqtt_url)
    try:
        with socket.create_connection((host, port), timeout=5) as sock:
            if tls:
                context = ssl.create_default_context(
                    cafile=str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None
                )
                if settings.mqtt_cert_file:
                    key = str(settings.mqtt_key_file) if settings.mqtt_key_file else None
                    context.load_cert_chain(str(settings.mqtt_cert_file), key)
                with context.wrap_socket(sock, server_hostname=host):
                    pass
    except OSError as exc:  # ssl.SSLError among them
        hint = " (set GN_MQTT_CA_FILE to the CA that signed the broker's certificate)" if tls else ""
        return f"cannot connect to the broker at {host}:{port}: {exc}{hint}"
    return f"the broker at {host}:{port} closed the connection"


def make_client(settings: Settings, will: bytes) -> tuple[mqtt.Client, str, int]:
    """A paho client for this box: its device id, credentials, TLS with verification, its last will."""
    host, port, tls, user, password = broker_of(settings.mqtt_url)
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=settings.device_id,
        protocol=mqtt.MQTTv311,
        clean_session=True,
    )
    if user is not None:
        client.username_pw_set(user, password)
    if tls:
        client.tls_set(
            ca_certs=str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None,
            certfile=str(settings.mqtt_cert_file) if settings.mqtt_cert_file else None,
            keyfile=str(settings.mqtt_key_file) if settings.mqtt_key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    client.will_set(contract.topic(settings.device_id, contract.Topic.PRESENCE), will, qos=1, retain=True)
    client.reconnect_delay_set(1, 10)  # back within 10 s of the broker
    # One message in flight at a time keeps events in order even when the broker drops the connection.
    client.max_inflight_messages_set(1)
    return client, host, port


class Agent:
    """One box's fleet agent."""

    def __init__(self, settings: Settings, env_file: Path | None) -> None:
        self.settings = settings
        self.env_file = env_file
        self.device = settings.device_id
        self.conn = connect(settings)
        self.outbox = Outbox(self.conn, self.device)
        self.config = RemoteConfig(settings, env_file)
        gravanois = Path(sys.executable).parent / "gravanois"
        self.commands = Commands(settings, env_file, gravanois)
        self.started = time.time()
        self.stop = threading.Event()
        self.connected = threading.Event()
        self.inbox: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.work: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.in_flight: tuple[str, mqtt.MQTTMessageInfo] | None = None
        self.state_fp = ""
        self.state_at = 0.0
        self.next_look = 0.0
        self.healthy: bool | None = None
        offline = report.presence(settings, "offline", 0, None)
        self.client, self.host, self.port = make_client(settings, json.dumps(offline).encode())
        self.client.on_connect = self.on_connect
        self.client.on_disconnect = self.on_disconnect
        self.client.on_message = self.on_message
        self.client.on_connect_fail = self.on_connect_fail
        # Failures to connect in a row: the first one is a warning with its reason, the others are quiet.
        self.failures = 0

    # ---- the MQTT client's callbacks (its network thread: they only hand things to the main loop)

    def on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            event(log, "fleet_refused", 30, broker=f"{self.host}:{self.port}", reason=str(reason))
            return
        event(log, "fleet_connected", broker=f"{self.host}:{self.port}", after_failures=self.failures)
        self.failures = 0
        client.subscribe([(contract.topic(self.device, t), 1) for t in contract.INBOUND])
        self.connected.set()
        self.inbox.put(("connected", b""))

    def on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        self.failures += 1
        if self.failures == 1:
            event(log, "fleet_unreachable", 30, msg=connect_problem(self.settings) + "; retrying")

    def on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if self.connected.is_set():
            event(log, "fleet_disconnected", 30, reason=str(reason))
        self.connected.clear()

    def on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.inbox.put((message.topic, bytes(message.payload)))

    # ---- the main loop

    def run(self) -> None:
        """Connect (and keep reconnecting) and serve until SIGTERM/SIGINT; say goodbye on the way out."""
        self.client.connect_async(self.host, self.port, keepalive=self.settings.mqtt_keepalive)
        self.client.loop_start()
        worker = threading.Thread(target=self.serve_work, name="fleet-work", daemon=True)
        worker.start()
        self.resume_update()
        try:
            while not self.stop.is_set():
                try:
                    self.turn()
                    self.take_message(TURN)
                except redis.RedisError as exc:
                    event(log, "fleet_redis_down", 30, error=type(exc).__name__)
                    self.stop.wait(1.0)
        finally:
            self.goodbye()

    def turn(self) -> None:
        """One turn: messages from the broker, the next event, and the box's state when it is time."""
        while True:
            try:
                topic_name, payload = self.inbox.get_nowait()
            except queue.Empty:
                break
            self.received(topic_name, payload)
        if self.connected.is_set():
            self.send_events()
            if time.monotonic() >= self.next_look:
                self.look()

    def take_message(self, timeout: float) -> None:
        """Wait up to `timeout` for a message from the broker, and take it (SIGTERM ends the wait too)."""
        try:
            topic_name, payload = self.inbox.get(timeout=timeout)
        except queue.Empty:
            return
        self.received(topic_name, payload)

    def goodbye(self) -> None:
        """A clean stop: presence offline (retained), as the last will would say after a crash."""
        if self.connected.is_set():
            info = self.publish(
                contract.Topic.PRESENCE, report.presence(self.settings, "offline", 0, None), 1, True
            )
            info.wait_for_publish(GOODBYE_WAIT)
        self.client.disconnect()
        self.client.loop_stop()
        event(log, "fleet_agent_stopped")

    # ---- what the box sends

    def publish(
        self, which: contract.Topic, message: dict[str, Any], qos: int, retain: bool = False
    ) -> mqtt.MQTTMessageInfo:
        payload = json.dumps(message, ensure_ascii=False).encode()
        return self.client.publish(contract.topic(self.device, which), payload, qos=qos, retain=retain)

    def signed(self, which: contract.Topic, body: dict[str, Any]) -> dict[str, Any]:
        return contract.signed(self.settings.device_secret, which, report.envelope(self.settings, **body))

    def send_events(self) -> None:
        """The next event of the stream, once the broker acknowledged the one before (order kept)."""
        if self.in_flight is not None:
            entry_id, info = self.in_flight
            if not info.is_published():
                return
            self.outbox.acknowledged(entry_id)
            self.in_flight = None
        nxt = self.outbox.next()
        if nxt is None:
            return
        entry_id, ev = nxt
        message = self.signed(contract.Topic.EVENTS, ev)
        self.in_flight = (entry_id, self.publish(contract.Topic.EVENTS, message, 1))

    def look(self) -> None:
        """Heartbeat, and the state when it changed (or is due); the retained presence on a health change."""
        self.next_look = time.monotonic() + self.settings.mqtt_heartbeat_seconds
        content, healthy = report.state(self.settings, settings_hash(self.config.settings), self.started)
        queued = self.outbox.size()
        if healthy != self.healthy:
            self.healthy = healthy
            self.publish(
                contract.Topic.PRESENCE, report.presence(self.settings, "online", queued, healthy), 1, True
            )
        self.publish(contract.Topic.HEARTBEAT, report.presence(self.settings, "online", queued, healthy), 0)
        fp = report.fingerprint(content)
        if fp != self.state_fp or time.time() - self.state_at >= self.settings.mqtt_state_seconds:
            body = report.envelope(
                self.settings, reported_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **content
            )
            self.publish(contract.Topic.STATE, body, 1, True)
            self.state_fp, self.state_at = fp, time.time()

    # ---- what the box receives

    def received(self, topic_name: str, payload: bytes) -> None:
        if topic_name == "connected":
            self.healthy = None  # a fresh presence and state for a fresh connection
            self.state_fp = ""
            self.next_look = 0.0
            self.report_config_if_changed()
            return
        found = contract.parse_topic(topic_name)
        if found is None or found[0] != self.device:
            return
        try:
            message = json.loads(payload)
        except ValueError:
            message = None
        which = found[1]
        if which is contract.Topic.CONFIG_DESIRED and payload:
            self.desired(message)
        elif which is contract.Topic.CONFIG_REQUEST:
            self.config_request(message)
        elif which is contract.Topic.COMMANDS_IN:
            self.command(message)

    def refused(self, what: str, exc: Refused) -> None:
        event(log, "fleet_refused_message", 30, what=what, reason=exc.reason, detail=exc.detail)
        incr(self.conn, self.settings, keys.Counter.FLEET_MESSAGES_REFUSED)

    def desired(self, message: Any) -> None:
        outcome = self.config.take(message if isinstance(message, dict) else {})
        if outcome.status == "rejected":
            self.refused("config/desired", Refused(outcome.reason, outcome.detail))
        self.report_config(outcome)
        if outcome.status == "pending_restart":
            self.work.put(("restart", outcome))

    def report_config(self, outcome: Any) -> None:
        self.publish(
            contract.Topic.CONFIG_REPORTED,
            self.signed(contract.Topic.CONFIG_REPORTED, self.config.reported(outcome)),
            1,
            True,
        )
        if outcome.status != "rejected":
            self.conn.hset(
                keys.fleet(self.device),
                mapping={"reported_version": str(outcome.version), "reported_status": outcome.status},
            )

    def report_config_if_changed(self) -> None:
        """After a start: a config reported as pending a restart that has happened since is applied now."""
        seen = {text(k): text(v) for k, v in self.conn.hgetall(keys.fleet(self.device)).items()}
        version = self.config.version()
        if (
            version
            and seen.get("reported_status") == "pending_restart"
            and seen.get("reported_version") == str(version)
        ):
            outcome = self.config.now_status(version, self.config.record().get("correlation_id"))
            if outcome.status == "applied":
                self.report_config(outcome)

    def config_request(self, message: Any) -> None:
        try:
            body = self.config.state(message if isinstance(message, dict) else {})
        except Refused as exc:
            self.refused("config/request", exc)
            return
        self.publish(contract.Topic.CONFIG_STATE, self.signed(contract.Topic.CONFIG_STATE, body), 1)

    def command(self, message: Any) -> None:
        message = message if isinstance(message, dict) else {}
        try:
            self.commands.check(message)
        except Refused as exc:
            self.refused("commands/in", exc)
            self.answer(
                message.get("command_id"), "rejected", exc.reason + (f": {exc.detail}" if exc.detail else "")
            )
            return
        self.answer(message["command_id"], "accepted")
        self.work.put(("command", message))

    def answer(
        self, command_id: Any, status: str, reason: str = "", result: dict[str, Any] | None = None
    ) -> None:
        body: dict[str, Any] = {
            "command_id": command_id if isinstance(command_id, str) else None,
            "status": status,
            "reason": reason,
            "result": result or {},
            "reported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self.publish(contract.Topic.COMMANDS_OUT, self.signed(contract.Topic.COMMANDS_OUT, body), 1)

    # ---- the command thread: commands and restarts, one at a time

    def serve_work(self) -> None:
        while not self.stop.is_set():
            try:
                kind, item = self.work.get(timeout=1.0)
            except queue.Empty:
                continue
            try:
                if kind == "command":
                    self.run_command(item)
                elif kind == "restart":
                    self.restart_when_quiet()
                elif kind == "update_result":
                    self.finish_update(item)
            except Exception as exc:  # a bug in one command must not end the agent
                event(log, "fleet_work_failed", 40, kind=kind, error=f"{type(exc).__name__}: {exc}")

    def run_command(self, message: dict[str, Any]) -> None:
        command_id, name = message["command_id"], message["name"]
        if name == "update":
            self.conn.hset(keys.fleet(self.device), "update_command", command_id)
        try:
            result = self.commands.run[name](message.get("args") or {})
        except CommandFailed as exc:
            self.answer(command_id, "failed", str(exc), exc.result)
        else:
            self.answer(command_id, "done", "", result)
        if name == "update":
            self.conn.hdel(keys.fleet(self.device), "update_command")

    def resume_update(self) -> None:
        """An update the fleet asked for restarted this agent: answer it once the updater is done."""
        command_id = self.conn.hget(keys.fleet(self.device), "update_command")
        if command_id:
            self.work.put(("update_result", text(command_id)))

    def finish_update(self, command_id: str) -> None:
        layout = Layout.running()
        if layout is None:
            return
        while (state := layout.state.read()).get("phase") in State.UNFINISHED:
            if self.stop.wait(2.0):
                return  # stopped by the update itself (a rollback restarts this agent): the next one answers
        if state.get("phase") == "committed":
            self.answer(command_id, "done", "", {"outcome": f"update to {state.get('to')} done", **state})
        else:
            self.answer(command_id, "failed", state.get("reason", "the update did not finish"), state)
        self.conn.hdel(keys.fleet(self.device), "update_command")

    def restart_when_quiet(self) -> None:
        """Restart the programs for settings that need it, once no build runs and no press waits."""
        while not self.stop.is_set() and self.config.pending():
            if self.quiet():
                restarter = Restarter(self.settings, self.env_file, self.launcher_python(), skip=("agent",))
                with restarter.on_purpose("settings from the fleet"):
                    restarter.restart()
                self.config.restarted()
                outcome = self.config.now_status(
                    self.config.version(), self.config.record().get("correlation_id")
                )
                self.report_config(outcome)
                return
            self.stop.wait(QUIET_EVERY)

    def quiet(self) -> bool:
        """No build or render running, no press waiting for its post-roll."""
        for stage in (Stage.BUILD, Stage.RENDER):
            q = rq_queue(self.settings, stage, self.conn)
            if q.count or q.started_job_registry.count:
                return False
        return True

    def launcher_python(self) -> Path:
        layout = Layout.running()
        return layout.root / "current" / "bin" / "python" if layout else Path(sys.executable)


@click.command()
@click.option("--redis-wait", default=60.0, show_default=True, help="Seconds to wait for Redis at start.")
@click.pass_context
def agent(ctx: click.Context, redis_wait: float) -> None:
    """Report to the company's MQTT broker and take its settings and commands (docs/fleet.md).

    Off unless GN_MQTT_URL is set; supervisord starts it only then.
    """
    settings = settings_from(ctx, process="agent")
    if not settings.fleet_enabled:
        fail("GN_MQTT_URL is not set: the fleet agent has no broker to talk to (see docs/fleet.md)")
    if not settings.device_secret:
        fail("GN_DEVICE_SECRET is not set: the fleet agent signs and checks every message with it")
    _, _, _, _, password = broker_of(settings.mqtt_url)
    if password:
        register_secret(password)
    redis_or_fail(settings, redis_wait)
    env_file = ctx.find_root().obj.get("env_file")
    box = Agent(settings, Path(env_file) if env_file and Path(env_file).is_file() else None)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: box.stop.set())
    event(log, "fleet_agent_start", broker=f"{box.host}:{box.port}", device=settings.device_id)
    box.run()
