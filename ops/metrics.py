"""`gravanois metrics`: the box's snapshot (ops.snapshot) in Prometheus text format.

Exposed through prometheus-client with a custom collector: every scrape reads Redis afresh. Printed
once, or served on loopback with `--serve PORT`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from typing import Any

import click
import redis
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from common import keys
from common.cli import settings_from
from common.redisconn import connect
from common.settings import Settings
from ops.snapshot import snapshot


@click.command()
@click.option(
    "--serve",
    "port",
    type=int,
    default=None,
    help="Serve the metrics over HTTP on 127.0.0.1:PORT/metrics until stopped, instead of printing once.",
)
@click.pass_context
def metrics(ctx: click.Context, port: int | None) -> None:
    """Print the counters, camera health, queues and disks in Prometheus text format."""
    settings = settings_from(ctx, process="metrics")
    reg = registry_for(settings)
    if port is None:
        click.echo(generate_latest(reg).decode(), nl=False)
        return
    # Loopback only: the box's numbers are not for the venue's Wi-Fi.
    server, thread = start_http_server(port, addr="127.0.0.1", registry=reg)
    click.echo(f"metrics on http://127.0.0.1:{server.server_port}/metrics", err=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set():
        stop.wait(1)
    server.shutdown()
    thread.join(5)


def registry_for(settings: Settings, conn: redis.Redis | None = None) -> CollectorRegistry:
    """A Prometheus registry holding only the box's collector."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(BoxCollector(settings, conn))
    return reg


class BoxCollector:
    """prometheus-client collector: counters from Redis, camera health, queues, disks, alarms."""

    def __init__(self, settings: Settings, conn: redis.Redis | None = None) -> None:
        self.settings = settings
        self.conn = conn or connect(settings)

    def collect(self) -> Iterator[Any]:
        """Read a fresh snapshot and yield metric families."""
        snap = snapshot(self.settings, self.conn, highlights=0)
        dev = ["device"]
        d = [snap["device"]]
        up = GaugeMetricFamily("gravanois_redis_up", "1 if Redis answers", labels=dev)
        up.add_metric(d, 1 if snap["redis"]["ok"] else 0)
        yield up
        for name, help_text in keys.COUNTERS.items():
            fam = CounterMetricFamily(f"gravanois_{name}", help_text, labels=dev)
            fam.add_metric(d, snap["counters"].get(name, 0))
            yield fam
        cam_labels = ["device", "camera"]
        recording = GaugeMetricFamily(
            "gravanois_camera_recording", "1 if the camera is recording", labels=cam_labels
        )
        age = GaugeMetricFamily(
            "gravanois_camera_last_segment_age_seconds",
            "Seconds since the last closed segment",
            labels=cam_labels,
        )
        buffered = GaugeMetricFamily(
            "gravanois_camera_buffered_seconds", "Seconds of video buffered", labels=cam_labels
        )
        keyframe = GaugeMetricFamily(
            "gravanois_camera_keyframe_interval_seconds", "Measured keyframe interval", labels=cam_labels
        )
        restarts = GaugeMetricFamily(
            "gravanois_camera_restarts_last_hour", "ffmpeg restarts in the last hour", labels=cam_labels
        )
        for cam in snap["cameras"]:
            labels = [snap["device"], cam["id"]]
            recording.add_metric(labels, 1 if cam["recording"] else 0)
            if cam["recording"] is None:
                continue
            restarts.add_metric(labels, cam["restarts_last_hour"])
            for gauge, key in (
                (age, "last_segment_age"),
                (buffered, "buffered_seconds"),
                (keyframe, "keyframe_interval"),
            ):
                if cam[key] is not None:
                    gauge.add_metric(labels, cam[key])
        yield from (recording, age, buffered, keyframe, restarts)
        jobs = GaugeMetricFamily(
            "gravanois_queue_jobs", "Jobs per stage and state", labels=["device", "stage", "state"]
        )
        workers = GaugeMetricFamily(
            "gravanois_queue_workers", "Workers serving a stage", labels=["device", "stage"]
        )
        for stage, q in snap["queues"].items():
            for state in ("scheduled", "queued", "running", "failed"):
                jobs.add_metric([snap["device"], stage, state], q[state])
            workers.add_metric([snap["device"], stage], q["workers"])
        yield from (jobs, workers)
        disk = GaugeMetricFamily(
            "gravanois_disk_free_bytes", "Free bytes on a disk", labels=["device", "disk"]
        )
        for name, info in snap["disk"].items():
            disk.add_metric([snap["device"], name], info["free_mb"] * (1 << 20))
        yield disk
        alarms = GaugeMetricFamily(
            "gravanois_alarm_active", "1 for each active alarm", labels=["device", "alarm"]
        )
        for name in snap["alarms"]:
            alarms.add_metric([snap["device"], name], 1)
        yield alarms
        pending = GaugeMetricFamily(
            "gravanois_journal_pending", "Presses journalled on disk, not yet in Redis", labels=dev
        )
        pending.add_metric(d, snap["journal"]["pending"])
        yield pending
        attention_fam = GaugeMetricFamily(
            "gravanois_attention", "Problems `gravanois status` lists (0: all good)", labels=dev
        )
        attention_fam.add_metric(d, len(snap["attention"]))
        yield attention_fam
