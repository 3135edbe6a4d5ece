"""The fleet agent against a real Mosquitto (password file, ACL) and a real redis-server: presence and its
last will, events in order and at least once across broker outages and restarts, signed desired
settings and commands, and the ACL that keeps a device to its own topics."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import redis

from common import events, keys
from common.settings import Settings
from common.settings import remote as remote_file
from harness.mosquitto import Mosquitto
from harness.redis_server import RedisServer
from harness.repo import gn_env, gravanois_cmd
from tests.fleet_helpers import Backend, signature_ok
from tests.helpers import wait_for
from trigger import press as press_mod

SECRET = "s3cret-for-the-fleet-tests-0123456789"
KEEPALIVE = 5


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "mosquitto") as running:
        yield running


def fleet_settings(make_settings: Callable[..., Settings], broker: Mosquitto, **kw: Any) -> Settings:
    """A box of this test on the test broker, its device id its MQTT user."""
    probe = make_settings()
    password = f"pw-{uuid.uuid4().hex[:8]}"
    broker.user(probe.device_id, password)
    # mosquitto reads its password file at start (and on SIGHUP): tell it about the new user.
    assert broker.proc is not None
    broker.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    base = {
        "mqtt_url": broker.url(probe.device_id, password),
        "mqtt_keepalive": KEEPALIVE,
        "mqtt_heartbeat_seconds": 1.0,
        "device_secret": SECRET,
        "client_id": "client-7",
        "venue_id": "venue-3",
    }
    return make_settings(**{**base, **kw})


class AgentProc:
    """`gravanois agent` as supervisord would run it."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings, self.log = settings, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProc:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                gravanois_cmd("agent"), env=gn_env(self.settings), stdout=out, stderr=subprocess.STDOUT
            )
        return self

    def kill(self, sig: int = signal.SIGKILL) -> float:
        assert self.proc is not None
        self.proc.send_signal(sig)
        t = time.monotonic()
        self.proc.wait(30)
        return t

    def __enter__(self) -> AgentProc:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def backend_for() -> Iterator[Callable[[Mosquitto, Settings], Backend]]:
    made: list[Backend] = []

    def make(broker: Mosquitto, s: Settings) -> Backend:
        made.append(Backend(broker, s.device_id, SECRET))
        return made[-1]

    yield make
    for b in made:
        b.close()


def test_presence_online_then_offline_by_the_last_will_after_a_kill(
    make_settings: Callable[..., Settings], broker: Mosquitto, backend_for: Any, tmp_path: Path
) -> None:
    s = fleet_settings(make_settings, broker)
    backend = backend_for(broker, s)
    with AgentProc(s, tmp_path / "agent.log") as agent:
        online = backend.wait("presence", lambda m: m.get("status") == "online", timeout=20)
        assert online["device_id"] == s.device_id and online["client_id"] == "client-7"
        assert {"last_seen", "agent_version", "hostname", "queue_size", "timestamp"} <= set(online)
        backend.wait("heartbeat", lambda m: m.get("status") == "online")
        state = backend.wait("state", lambda m: "cameras" in m)
        assert state["cameras"][0]["id"] == "cam1" and "runtime" in state and "health" in state
        killed = agent.kill(signal.SIGKILL)
        backend.wait("presence", lambda m: m.get("status") == "offline", timeout=3 * KEEPALIVE)
        assert time.monotonic() - killed <= 1.5 * KEEPALIVE + 1  # the broker's keepalive check, then the will
    # A clean stop says offline itself, at once.
    backend.messages.clear()
    with AgentProc(s, tmp_path / "agent.log") as agent:
        backend.wait("presence", lambda m: m.get("status") == "online", timeout=20)
        stopped = agent.kill(signal.SIGTERM)
        backend.wait("presence", lambda m: m.get("status") == "offline", timeout=10)
        assert time.monotonic() - stopped < KEEPALIVE
    # The retained presence says offline to whoever subscribes later.
    late = backend_for(broker, s)
    assert late.wait("presence")["status"] == "offline"


def test_over_tls_the_agent_verifies_the_broker_and_never_logs_its_password(
    make_settings: Callable[..., Settings], backend_for: Any, tmp_path: Path
) -> None:
    with Mosquitto(tmp_path / "tls-broker", tls=True) as broker:
        assert broker.ca_file is not None
        # Trusting the broker's CA: online over mqtts://.
        s = fleet_settings(make_settings, broker, mqtt_ca_file=broker.ca_file)
        assert s.mqtt_url.startswith("mqtts://")
        backend = backend_for(broker, s)
        with AgentProc(s, tmp_path / "trusting.log"):
            backend.wait("presence", lambda m: m.get("status") == "online", timeout=20)
        # Without it (the system's CAs, which never signed this certificate): no connection at all.
        untrusting = fleet_settings(make_settings, broker, device_id=f"{s.device_id}-x")
        watcher = backend_for(broker, untrusting)
        with AgentProc(untrusting, tmp_path / "untrusting.log"):
            time.sleep(8)
            assert watcher.on("presence") == []
        log = (tmp_path / "untrusting.log").read_text()
        # One sentence says why, and what to set.
        assert "cannot connect to the broker at 127.0.0.1:" in log and "certificate verify failed" in log
        assert "set GN_MQTT_CA_FILE" in log, log[-2000:]
        password = untrusting.mqtt_url.split(":")[2].split("@")[0]
        for name in ("trusting.log", "untrusting.log"):
            assert password not in (tmp_path / name).read_text()


def emit_numbered(s: Settings, conn: redis.Redis, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        events.emit(
            conn,
            s,
            events.EventType.TRIGGER_ACCEPTED,
            camera="cam1",
            trigger_id=f"cam1-{i:04d}",
            trigger_source="cli",
        )


def delivered(backend: Backend) -> list[dict[str, Any]]:
    return backend.on("capture/events")


def unique(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages without repeats of an `event_id` (what a consumer keeps), in the order first seen."""
    first: dict[str, dict[str, Any]] = {}
    for m in messages:
        first.setdefault(m["event_id"], m)
    return list(first.values())


# How long the broker is away while players press (the contract's test: a minute).
OUTAGE = 60.0


@pytest.mark.slow
def test_presses_during_a_minute_without_broker_reach_it_in_order_after_it_returns(
    make_settings: Callable[..., Settings],
    broker: Mosquitto,
    backend_for: Any,
    recording: Callable[..., None],
    tmp_path: Path,
    redis_conn: redis.Redis,
) -> None:
    s = fleet_settings(
        make_settings, broker, cooldown_seconds=0, pre_seconds=2, post_seconds=1,
        cameras=json.dumps({"cam1": "testsrc", "cam2": "testsrc"}),
    )  # fmt: skip
    recording(s, redis_conn, "cam1", "cam2")
    pressed: list[str] = []

    def press(camera: str) -> None:
        [p] = press_mod.make_presses(s, [camera], time.time(), "gpio")
        assert press_mod.submit(s, redis_conn, p).state == press_mod.SCHEDULED
        pressed.append(p.press_id)

    before = backend_for(broker, s)
    with AgentProc(s, tmp_path / "agent.log"):
        before.wait("presence", lambda m: m.get("status") == "online", timeout=20)
        for camera in ("cam1", "cam2", "cam1"):
            press(camera)
            time.sleep(0.01)
        wait_for("the first events", lambda: len(delivered(before)) >= 3, timeout=20)
        before.close()
        broker.stop()
        # A minute without the broker, a press every 2 s on alternate courts: each is taken at once.
        gone = time.monotonic()
        while time.monotonic() - gone < OUTAGE:
            started = time.monotonic()
            press(("cam1", "cam2")[len(pressed) % 2])
            assert time.monotonic() - started < 1.0  # the broker's absence never slows a press
            time.sleep(2.0)
        # Kept until the broker acknowledges them (the last one sent before it went may be among them).
        assert redis_conn.xlen(keys.events(s.device_id)) in (len(pressed) - 3, len(pressed) - 2)
        broker.start()
        after = backend_for(broker, s)
        wait_for(
            "every event after the broker came back",
            lambda: len(unique(delivered(after))) >= len(pressed) - 3,
            timeout=60,
        )
        wait_for("the stream emptied", lambda: redis_conn.xlen(keys.events(s.device_id)) == 0, timeout=20)
    got = delivered(before) + delivered(after)
    assert [m["trigger_id"] for m in unique(got)] == pressed
    assert {m["type"] for m in got} == {events.EventType.TRIGGER_ACCEPTED.value}
    # At least once: only an event the broker had not acknowledged when it went may come twice.
    assert len(got) - len(unique(got)) <= 1
    assert all(signature_ok(SECRET, "capture/events", m) for m in got)


def test_unacknowledged_events_survive_a_killed_agent_and_a_killed_redis(
    make_settings: Callable[..., Settings],
    broker: Mosquitto,
    backend_for: Any,
    tmp_path: Path,
    private_redis: RedisServer,
) -> None:
    s = fleet_settings(make_settings, broker, redis_url=private_redis.url)
    conn = private_redis.client()
    backend = backend_for(broker, s)
    agent = AgentProc(s, tmp_path / "agent.log").start()
    try:
        backend.wait("presence", lambda m: m.get("status") == "online", timeout=20)
        broker.stop()
        emit_numbered(s, conn, 10)
        time.sleep(1.5)  # the append-only file is written every second
        agent.kill(signal.SIGKILL)
        assert private_redis.proc is not None
        private_redis.proc.send_signal(signal.SIGKILL)
        private_redis.proc.wait()
        private_redis.start()
        broker.start()
        backend = backend_for(broker, s)
        agent.start()
        wait_for("the kept events", lambda: len(unique(delivered(backend))) >= 10, timeout=60)
    finally:
        agent.__exit__()
    assert [m["trigger_id"] for m in unique(delivered(backend))] == [f"cam1-{i:04d}" for i in range(10)]


def test_a_full_outbox_drops_the_oldest_and_counts_them(
    make_settings: Callable[..., Settings], broker: Mosquitto, redis_conn: redis.Redis
) -> None:
    s = fleet_settings(make_settings, broker, fleet_outbox_max=10)
    emit_numbered(s, redis_conn, 25)
    # redis-py types an XRANGE reply as anything a command may answer.
    entries: list[tuple[bytes, dict[bytes, bytes]]] = redis_conn.xrange(keys.events(s.device_id))  # type: ignore[assignment]
    assert [json.loads(f[b"event"])["trigger_id"] for _, f in entries] == [
        f"cam1-{i:04d}" for i in range(15, 25)
    ]
    assert redis_conn.hget(keys.counters(s.device_id), keys.Counter.EVENTS_DROPPED.value) == b"15"
    # No broker configured: nothing is kept at all.
    quiet = make_settings(mqtt_url="")
    emit_numbered(quiet, redis_conn, 3)
    assert redis_conn.xlen(keys.events(quiet.device_id)) == 10


def reported(backend: Backend, version: int, status: str) -> dict[str, Any]:
    m = backend.wait(
        "config/reported", lambda m: m.get("config_version") == version and m.get("status") == status
    )
    assert signature_ok(SECRET, "config/reported", m), m
    return m


def test_desired_settings_refused_for_every_reason_of_the_contract(
    make_settings: Callable[..., Settings], broker: Mosquitto, backend_for: Any, tmp_path: Path
) -> None:
    s = fleet_settings(make_settings, broker)
    backend = backend_for(broker, s)
    with AgentProc(s, tmp_path / "agent.log"):
        backend.wait("presence", lambda m: m.get("status") == "online", timeout=20)
        backend.desired(5, {"GN_COOLDOWN_SECONDS": 7})
        reported(backend, 5, "applied")
        cases = [
            (backend.desired(6, {"GN_COOLDOWN_SECONDS": 8}, secret="not-the-secret"), "bad_signature"),
            (backend.desired(4, {"GN_COOLDOWN_SECONDS": 9}), "replay"),
            (backend.desired(5, {"GN_COOLDOWN_SECONDS": 9}), "replay"),
            (backend.desired(7, {"GN_COOLDOWN_SECONDS": 9}, expires_in=-5), "expired"),
            (
                backend.desired(8, {"GN_COOLDOWN_SECONDS": 9}, desired_hash="sha256:" + "0" * 64),
                "hash_mismatch",
            ),
            (backend.desired(9, {"GN_DEVICE_SECRET": "steal-it"}), "not_remotely_settable"),
            (backend.desired(10, {"GN_API_BASE": "https://evil.example"}), "not_remotely_settable"),
            (backend.desired(11, {"GN_COOLDOWN_SECONDS": -3}), "invalid_value"),
            (backend.desired(12, {"GN_CAMERAS": '{"bad id!": "testsrc"}'}), "invalid_value"),
            (backend.desired(13, {"GN_COOLDOWN_SECONDS": 9}, device="another-box"), "wrong_device"),
        ]
        for message, reason in cases:
            answer = reported(backend, message["config_version"], "rejected")
            assert answer["correlation_id"] == message["correlation_id"]
            assert answer["reason"].split(":")[0] == reason, (reason, answer)
            assert "steal-it" not in json.dumps(answer)
    record = remote_file.read(remote_file.path_in(s.data_dir))
    assert record["config_version"] == 5 and record["settings"] == {"GN_COOLDOWN_SECONDS": 7}


def test_commands_are_answered_and_forged_ones_rejected(
    make_settings: Callable[..., Settings],
    broker: Mosquitto,
    backend_for: Any,
    tmp_path: Path,
    redis_conn: redis.Redis,
    recording: Callable[..., None],
) -> None:
    s = fleet_settings(make_settings, broker, device_secret=SECRET)
    recording(s, redis_conn, "cam1")
    logs = s.data_dir / "logs"
    logs.mkdir(parents=True)
    (logs / "worker-0.log").write_text(
        "".join(f"line {i} rtsp://admin:hunter2@10.0.0.5/stream\n" for i in range(30))
    )
    backend = backend_for(broker, s)
    with AgentProc(s, tmp_path / "agent.log"):
        backend.wait("presence", lambda m: m.get("status") == "online", timeout=20)
        # A press from the fleet is a press like the button's, from "remote".
        press = backend.command("press", {"camera": "cam1"})
        backend.result(press["command_id"], "accepted")
        done = backend.result(press["command_id"], "done")
        assert done["result"]["state"] == "scheduled" and done["result"]["trigger_id"].startswith("cam1-")
        job = redis_conn.hgetall(keys.highlight(s.device_id, done["result"]["trigger_id"]))
        assert job[b"state"] == b"scheduled"
        # The last lines of a program's log, passwords out.
        tail = backend.command("logs_tail", {"program": "worker-0", "lines": 5})
        lines = backend.result(tail["command_id"], "done")["result"]["lines"]
        assert len(lines) == 5 and lines[-1].startswith("line 29") and "hunter2" not in json.dumps(lines)
        # Nothing failed: requeueing all is done, with nothing to do.
        requeue = backend.command("requeue_failed", {"all": True})
        backend.result(requeue["command_id"], "done")
        # Forged, replayed, expired, unknown, for another device: each rejected with its reason.
        rejected = {
            backend.command("press", {"camera": "cam1"}, secret="guessed")["command_id"]: "bad_signature",
            backend.command("press", {"camera": "cam1"}, command_id=press["command_id"])[
                "command_id"
            ]: "replay",
            backend.command("press", {"camera": "cam1"}, expires_in=-1)["command_id"]: "expired",
            backend.command("format_disk", {})["command_id"]: "unknown_command",
            backend.command("press", {"camera": "cam1"}, device="another-box")["command_id"]: "wrong_device",
        }
        for command_id, reason in rejected.items():
            answer = backend.wait(
                "commands/out",
                lambda m, c=command_id, r=reason: (
                    m.get("command_id") == c and m.get("reason", "").startswith(r)
                ),
            )
            assert answer["status"] == "rejected" and signature_ok(SECRET, "commands/out", answer)
        # A press on a camera the box does not have fails with a sentence.
        unknown = backend.command("press", {"camera": "cam9"})
        assert "unknown camera" in backend.result(unknown["command_id"], "failed")["reason"]
    refused = redis_conn.hget(keys.counters(s.device_id), keys.Counter.FLEET_MESSAGES_REFUSED.value)
    assert int(refused or 0) >= len(rejected)


def test_the_acl_keeps_a_device_to_its_own_topics(
    make_settings: Callable[..., Settings], broker: Mosquitto, backend_for: Any
) -> None:
    mine = fleet_settings(make_settings, broker)
    backend = backend_for(broker, mine)
    intruder_password = "intruder-pw"
    broker.user("box-intruder", intruder_password)
    assert broker.proc is not None
    broker.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    got: list[str] = []
    granted: list[Any] = []
    intruder = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="box-intruder")
    intruder.username_pw_set("box-intruder", intruder_password)
    intruder.on_message = lambda _c, _u, msg: got.append(msg.topic)
    intruder.on_subscribe = lambda _c, _u, _mid, codes, _p: granted.extend(codes)
    intruder.connect("127.0.0.1", broker.port)
    intruder.loop_start()
    try:
        intruder.subscribe([(f"grn/devices/{mine.device_id}/#", 1), ("grn/devices/box-intruder/#", 1)])
        wait_for("the broker's answer to the subscriptions", lambda: len(granted) == 2, timeout=10)
        # Its own topics work (the test would prove nothing otherwise)...
        intruder.publish("grn/devices/box-intruder/presence", b"{}", qos=1).wait_for_publish(5)
        wait_for("its own message", lambda: "grn/devices/box-intruder/presence" in got, timeout=10)
        # ...but it may neither read another device's topics nor write a command to it (the broker drops
        # both silently: MQTT 3.1.1 has no way to refuse a publish).
        other = f"grn/devices/{mine.device_id}"
        intruder.publish(f"{other}/commands/in", b'{"name": "press"}', qos=1).wait_for_publish(5)
        backend.publish("presence", {"status": "probe"})
        backend.wait("presence", lambda m: m.get("status") == "probe")
        time.sleep(1.0)
        assert [t for t in got if t.startswith(other)] == []
        assert backend.on("commands/in") == []
    finally:
        intruder.loop_stop()
        intruder.disconnect()
