#!/usr/bin/env python3
"""The fleet at scale: N boxes' agents on one Mosquitto, the fleet view subscribed; and one agent's cost.

1. N simulated boxes (paho clients in this process, each with its own client id, retained presence with
   a last will, a heartbeat and a state every --heartbeat seconds, as `gravanois agent` sends them) on a
   local Mosquitto, with `gravanois fleet` subscribed. Measured over --seconds: the broker's CPU and
   memory; the view's CPU and memory beside `mosquitto_sub -t 'grn/devices/+/#'` (the floor: receiving
   every message and doing nothing with it); and the view's update latency (a box's presence changes →
   the page's server-sent events carry it) beside mosquitto_sub's receive latency of the same message.
2. One real `gravanois agent` (its own redis-server, the default heartbeat) against the same broker for
   --agent-seconds: its CPU-seconds per hour and memory, beside an idle `mosquitto_sub` holding one
   connection with the same keepalive (the floor of being connected at all).

    bench/fleet.py [--boxes 200] [--seconds 60] [--heartbeat 30] [--agent-seconds 120]

Prints a table with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from deploy.checkout import run_in_venv  # noqa: E402

run_in_venv(__file__)  # the project's venv (the README's setup) has the dependencies

import paho.mqtt.client as mqtt  # noqa: E402

from harness.mosquitto import BACKEND_PASSWORD, BACKEND_USER, Mosquitto  # noqa: E402
from harness.procfs import cpu_ns  # noqa: E402
from harness.redis_server import RedisServer, free_port  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    return cpu_ns(pid) / 1e9


def rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20


class SimBox:
    """One box's MQTT traffic, as the agent sends it (presence, heartbeat, state), no box behind it."""

    def __init__(self, port: int, n: int, heartbeat: float) -> None:
        self.device = f"bench-{n:04d}"
        self.heartbeat = heartbeat
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.device)
        self.client.username_pw_set(BACKEND_USER, BACKEND_PASSWORD)
        self.client.will_set(self.topic("presence"), json.dumps(self.presence("offline")), qos=1, retain=True)
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.next = time.monotonic() + (n % 100) * heartbeat / 100  # spread the boxes over the interval

    def topic(self, name: str) -> str:
        return f"grn/devices/{self.device}/{name}"

    def presence(self, status: str, marker: str = "") -> dict[str, Any]:
        return {
            "device_id": self.device,
            "client_id": "c",
            "venue_id": "v",
            "agent_version": "0.1.0",
            "status": status,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "last_seen": marker or time.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "hostname": self.device,
            "queue_size": 0,
            "health": "ok",
        }

    def state(self) -> dict[str, Any]:
        cams = [{"id": "cam1", "name": "Quadra 1", "camera_status": "recording", "segment_age_sec": 0.6}]
        health = {
            "disks": {"output": {"free_bytes": 10**9, "total_bytes": 2 * 10**9, "low": False}},
            "failed_count": 0,
        }
        return {
            "device_id": self.device,
            "agent_version": "0.1.0",
            "cameras": cams,
            "health": health,
            "runtime": {},
        }

    def beat(self) -> None:
        if time.monotonic() < self.next:
            return
        self.next += self.heartbeat
        self.client.publish(self.topic("heartbeat"), json.dumps(self.presence("online")), qos=0)
        self.client.publish(self.topic("state"), json.dumps(self.state()), qos=1, retain=True)


def sse_reader(url: str, seen: dict[str, float], stop: threading.Event) -> None:
    """Note when each marker first appears in the view's server-sent events."""
    with urllib.request.urlopen(url, timeout=600) as resp:
        for raw in resp:
            if stop.is_set():
                return
            line = raw.decode(errors="replace")
            if line.startswith("data: "):
                now = time.monotonic()
                for box in json.loads(line[6:])["boxes"]:
                    marker = str(box.get("last_seen") or "")
                    if marker.startswith("mark-"):
                        seen.setdefault(marker, now)


def sub_reader(proc: subprocess.Popen[bytes], seen: dict[str, float]) -> None:
    assert proc.stdout is not None
    for raw in proc.stdout:
        now = time.monotonic()
        text = raw.decode(errors="replace")
        if "mark-" in text:
            marker = text.split('"last_seen": "', 1)[-1].split('"', 1)[0]
            seen.setdefault(marker, now)


def wait_port(port: int) -> None:
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def gravanois(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """The project's command line, quiet, from this checkout."""
    cmd = [sys.executable, "-m", "common.cli", *args]
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def subscriber(
    port: int, user: str, password: str, topic: str, *extra: str, stdout: int = subprocess.DEVNULL
) -> subprocess.Popen[bytes]:
    """`mosquitto_sub` (Mosquitto's own client: the floor any consumer is compared with) on `topic`."""
    cmd = ["mosquitto_sub", "-p", str(port), "-u", user, "-P", password, *extra, "-t", topic]
    return subprocess.Popen(cmd, stdout=stdout)


def fleet_scale(tmp: Path, boxes: int, seconds: float, heartbeat: float) -> dict[str, Any]:
    broker = Mosquitto(tmp / "mosquitto").start()
    url = f"mqtt://{BACKEND_USER}:{BACKEND_PASSWORD}@127.0.0.1:{broker.port}"
    view_port = free_port()
    view = gravanois("fleet", "--broker", url, "--port", str(view_port))
    sub = subscriber(broker.port, BACKEND_USER, BACKEND_PASSWORD, "grn/devices/+/#", stdout=subprocess.PIPE)
    try:
        wait_port(view_port)
        sims = [SimBox(broker.port, n, heartbeat) for n in range(boxes)]
        for s in sims:
            s.client.loop_start()
            s.client.publish(s.topic("presence"), json.dumps(s.presence("online")), qos=1, retain=True)
        view_seen: dict[str, float] = {}
        sub_seen: dict[str, float] = {}
        stop = threading.Event()
        threading.Thread(
            target=sse_reader, args=(f"http://127.0.0.1:{view_port}/changes", view_seen, stop), daemon=True
        ).start()
        threading.Thread(target=sub_reader, args=(sub, sub_seen), daemon=True).start()
        time.sleep(3)  # everyone connected, the view has the table
        start = {p: cpu_seconds(p) for p in (broker.proc.pid, view.pid, sub.pid)}  # type: ignore[union-attr]
        t0 = time.monotonic()
        sent: dict[str, float] = {}
        k = 0
        while time.monotonic() - t0 < seconds:
            for s in sims:
                s.beat()
            if time.monotonic() - t0 > k * 2.0:  # a box's presence changes every 2 s: the latency probe
                box = sims[k % len(sims)]
                marker = f"mark-{k:04d}-{uuid.uuid4().hex[:6]}"
                sent[marker] = time.monotonic()
                box.client.publish(
                    box.topic("presence"), json.dumps(box.presence("online", marker)), qos=1, retain=True
                )
                k += 1
            time.sleep(0.01)
        elapsed = time.monotonic() - t0
        time.sleep(2)
        cpu = {p: (cpu_seconds(p) - start[p]) / elapsed for p in start}
        result = {
            "boxes": boxes,
            "broker_cpu": cpu[broker.proc.pid],  # type: ignore[union-attr]
            "broker_rss_mb": rss_mb(broker.proc.pid),  # type: ignore[union-attr]
            "view_cpu": cpu[view.pid],
            "view_rss_mb": rss_mb(view.pid),
            "sub_cpu": cpu[sub.pid],
            "sub_rss_mb": rss_mb(sub.pid),
            "view_latency": [view_seen[m] - t for m, t in sent.items() if m in view_seen],
            "sub_latency": [sub_seen[m] - t for m, t in sent.items() if m in sub_seen],
            "probes": len(sent),
        }
        stop.set()
        for s in sims:
            s.client.loop_stop()
            s.client.disconnect()
        return result
    finally:
        for p in (view, sub):
            p.terminate()
            p.wait(20)
        broker.stop()


def agent_cost(tmp: Path, seconds: float) -> dict[str, Any]:
    broker = Mosquitto(tmp / "mosquitto-agent")
    broker.user("bench-box", "box-pw").start()
    redis = RedisServer(data_dir=tmp / "redis").start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GN_")}
    env.update(
        GN_DEVICE_ID="bench-box",
        GN_DATA_DIR=str(tmp / "data"),
        GN_BUFFER_DIR=str(tmp / "buffer"),
        GN_REDIS_URL=redis.url,
        GN_MQTT_URL=broker.url("bench-box", "box-pw"),
        GN_DEVICE_SECRET="bench-secret-0123456789abcdef",
        GN_LOG_FORMAT="json",
        PYTHONPATH=str(REPO),
    )
    agent = gravanois("--env-file", "/dev/null", "agent", env=env)
    # The floor: one idle connection with the agent's keepalive, subscribed to what the agent listens to.
    idle = subscriber(broker.port, "bench-box", "box-pw", "grn/devices/bench-box/commands/in", "-k", "30")
    try:
        time.sleep(10)  # started, connected, first state sent
        start = {p: cpu_seconds(p) for p in (agent.pid, idle.pid)}
        time.sleep(seconds)
        per_hour = {p: (cpu_seconds(p) - start[p]) / seconds * 3600 for p in start}
        return {
            "agent_cpu_s_per_h": per_hour[agent.pid],
            "agent_rss_mb": rss_mb(agent.pid),
            "idle_cpu_s_per_h": per_hour[idle.pid],
            "idle_rss_mb": rss_mb(idle.pid),
            "seconds": seconds,
        }
    finally:
        for p in (agent, idle):
            p.send_signal(signal.SIGTERM)
            p.wait(20)
        redis.stop()
        broker.stop()


def ms(values: list[float]) -> str:
    if not values:
        return "   -"
    return f"{statistics.median(values) * 1000:7.1f} ms (max {max(values) * 1000:.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--boxes", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--heartbeat", type=float, default=30.0)
    parser.add_argument("--agent-seconds", type=float, default=120.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gn-bench-fleet-") as tmp:
        scale = fleet_scale(Path(tmp), args.boxes, args.seconds, args.heartbeat)
        cost = agent_cost(Path(tmp), args.agent_seconds)
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}  (cores: {os.cpu_count()})")
    boxes, probes = scale["boxes"], scale["probes"]
    print(f"{boxes} boxes, heartbeat {args.heartbeat:g} s, {args.seconds:g} s, {probes} probes")
    print(f"{'':38} {'CPU (cores)':>12} {'RSS':>9} {'vs floor':>9}  update latency")
    row("mosquitto (broker)", scale["broker_cpu"], scale["broker_rss_mb"])
    row("mosquitto_sub, every box (floor)", scale["sub_cpu"], scale["sub_rss_mb"], 1.0, scale["sub_latency"])
    ratio = scale["view_cpu"] / scale["sub_cpu"] if scale["sub_cpu"] else float("nan")
    row("gravanois fleet (the view)", scale["view_cpu"], scale["view_rss_mb"], ratio, scale["view_latency"])
    print(f"one box, {cost['seconds']:g} s:")
    print(f"{'':38} {'CPU-s/hour':>12} {'RSS':>9} {'vs floor':>9}")
    idle = cost["idle_cpu_s_per_h"]
    row("mosquitto_sub idle, keepalive 30 (floor)", idle, cost["idle_rss_mb"], 1.0)
    agent = cost["agent_cpu_s_per_h"]
    ratio = agent / idle if idle else float("nan")
    row("gravanois agent (heartbeat 30 s)", agent, cost["agent_rss_mb"], ratio)


def row(name: str, cpu: float, rss: float, ratio: float | None = None, latency: Any = None) -> None:
    """One line of the table (`ratio`: against the floor; `latency`: as `ms` shows it)."""
    line = f"{name:38} {cpu:>12.4f} {rss:>7.1f}MB {'' if ratio is None else f'{ratio:.1f}x':>9}"
    print(line + (f"  {ms(latency)}" if latency is not None else ""))


if __name__ == "__main__":
    main()
