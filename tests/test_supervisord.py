"""supervisord.conf: checked by supervisor's own option parser, then run for real on the synthetic camera."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import ModuleType

import pytest
import redis
from supervisor.options import ServerOptions

from harness.box import LAUNCHER, box_env, own_processes
from harness.repo import REPO, gravanois_cmd


def load_launcher() -> ModuleType:
    spec = importlib.util.spec_from_file_location("supervise", LAUNCHER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def realize(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **extra: str) -> ServerOptions:
    """Prepare the environment like the launcher does and let supervisor parse the shipped file."""
    for key, value in box_env(tmp_path, **extra).items():
        monkeypatch.setenv(key, value)
    launcher = load_launcher()
    env, cameras = launcher.prepare(Path("/dev/null"))
    launcher.materialize(env, cameras)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    options = ServerOptions()
    options.realize(args=["-c", str(REPO / "supervisord.conf")])
    return options


def test_supervisor_parses_the_shipped_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    options = realize(
        monkeypatch,
        tmp_path,
        GN_CAMERAS='{"court1": "rtsp://u:p@127.0.0.1:9/a", "court2": "testsrc"}',
        GN_WORKERS="3",
        GN_UPLOAD_CONCURRENCY="2",
    )
    procs = {p.name: (g, p) for g in options.process_group_configs for p in g.process_configs}
    assert set(procs) == {
        "redis",
        "recorder-court1",
        "recorder-court2",
        "worker-0",
        "worker-1",
        "worker-2",
        "upload-0",
        "upload-1",
        "trigger",
        "scheduler",
        "ahead",
        "agent",
        "web",
    }
    prio = {name: g.priority for name, (g, _) in procs.items()}
    assert prio["redis"] < prio["recorder-court1"] < prio["worker-0"] < prio["upload-0"] < prio["trigger"]
    assert prio["redis"] < prio["scheduler"] < prio["worker-0"]
    assert prio["recorder-court1"] < prio["ahead"] < prio["worker-0"]
    assert prio["trigger"] < prio["agent"] < prio["web"]  # the web app starts last and stops first
    assert not procs["agent"][1].autostart  # no broker configured: no fleet agent
    data = tmp_path / "data"
    for name, (_, p) in procs.items():
        assert p.autorestart and p.killasgroup, name
        assert str(p.stdout_logfile).startswith(str(data / "logs")), name
        assert p.stdout_logfile_maxbytes <= 10 * 1024 * 1024 and p.stdout_logfile_backups >= 1, name
        assert p.redirect_stderr, name
        exe = p.command.split()[0]
        assert Path(exe).is_file() or any(
            (Path(d) / exe).is_file() for d in os.environ["PATH"].split(os.pathsep)
        ), exe
        if name.startswith(("recorder", "worker", "upload")):
            assert p.stopwaitsecs >= 15 and p.stopsignal == signal.SIGTERM, name
        if name in ("scheduler", "ahead"):
            assert p.stopwaitsecs >= 5 and p.stopsignal == signal.SIGTERM, name
    redis_cmd = procs["redis"][1].command
    assert f"--dir {data / 'redis'}" in redis_cmd and "deploy/redis.conf" in redis_cmd
    redis_conf = (REPO / "deploy" / "redis.conf").read_text()
    for line in ("daemonize no", "appendonly yes", "bind 127.0.0.1"):
        assert line in redis_conf.splitlines()
    assert procs["recorder-court2"][1].command.endswith("recorder --camera court2")
    worker_cmd = procs["worker-0"][1].command
    # One scheduler per device, its own program; the workers run none.
    assert "--queues build,render" in worker_cmd and "--no-scheduler" in worker_cmd
    assert procs["scheduler"][1].command.endswith("gravanois scheduler")
    assert procs["ahead"][1].command.endswith("gravanois ahead") and procs["ahead"][1].autostart
    assert all("--no-scheduler" in p.command for n, (_, p) in procs.items() if n.startswith("upload"))
    assert "--queues upload" in procs["upload-1"][1].command
    assert procs["trigger"][1].command.endswith("trigger listen --input gpio")
    assert procs["web"][1].command.endswith("gravanois web") and procs["web"][1].autostart
    # Uploads are not configured here, so their workers do not start; Redis is local, so it does.
    assert procs["redis"][1].autostart and not procs["upload-0"][1].autostart
    # Every path is this box's, none of the repository's machine.
    assert options.pidfile.startswith(str(data / "run"))
    assert options.server_configs[0]["file"].startswith(str(data / "run"))


def test_launcher_follows_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    options = realize(
        monkeypatch,
        tmp_path,
        GN_REDIS_URL="redis://redis.example:6379/0",
        GN_API_BASE="http://127.0.0.1:9",
        GN_CLIENT_ID="c",
        GN_VENUE_ID="v",
        GN_DEVICE_SECRET="x" * 16,
    )
    procs = {p.name: p for g in options.process_group_configs for p in g.process_configs}
    # A remote Redis is not ours to run; configured uploads get their worker.
    assert not procs["redis"].autostart and procs["upload-0"].autostart
    # A camera dropped from GN_CAMERAS loses its program at the next start.
    recorders = tmp_path / "data" / "run" / "recorders"
    assert [p.name for p in recorders.iterdir()] == ["recorder-cam1.conf"]


def test_supervision_settings_reach_supervisord(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Any boolean spelling is a setting's: supervisord reads the one spelling to_env writes.
    options = realize(
        monkeypatch, tmp_path, GN_WORKERS="1", GN_TRIGGER_AUTOSTART="off", GN_TRIGGER_INPUT="serial"
    )
    procs = {p.name: p for g in options.process_group_configs for p in g.process_configs}
    assert [name for name in procs if name.startswith("worker-")] == ["worker-0"]
    assert not procs["trigger"].autostart
    assert procs["trigger"].command.endswith("trigger listen --input serial")


def test_launcher_reads_the_supervision_settings_from_the_settings_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key, value in box_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    for key in ("GN_WORKERS", "GN_TRIGGER_AUTOSTART", "GN_TRIGGER_INPUT"):
        monkeypatch.delenv(key, raising=False)
    env_file = tmp_path / "box.env"
    env_file.write_text("GN_WORKERS=3\nGN_TRIGGER_AUTOSTART=no\nGN_TRIGGER_INPUT=serial\n")
    env, _ = load_launcher().prepare(env_file)
    assert (env["GN_WORKERS"], env["GN_TRIGGER_AUTOSTART"], env["GN_TRIGGER_INPUT"]) == (
        "3",
        "false",
        "serial",
    )


def test_by_default_a_worker_per_camera_and_one_more(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key, value in box_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("GN_WORKERS", raising=False)
    for cameras, workers in (
        ('{"a": "testsrc"}', "2"),
        ('{"a": "testsrc", "b": "testsrc", "c": "testsrc"}', "4"),
    ):
        monkeypatch.setenv("GN_CAMERAS", cameras)
        env, _ = load_launcher().prepare(Path("/dev/null"))
        assert env["GN_WORKERS"] == workers


@pytest.mark.parametrize(
    ("name", "value"), [("GN_SEG_TIME", "-1"), ("GN_WORKERS", "many"), ("GN_TRIGGER_INPUT", "enter")]
)
def test_launcher_stops_on_a_bad_setting(tmp_path: Path, name: str, value: str) -> None:
    env = box_env(tmp_path, **{name: value})
    res = subprocess.run(
        [sys.executable, str(LAUNCHER), "--env-file", "/dev/null"], env=env, capture_output=True, text=True
    )
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [res.stderr.strip()] and name in res.stderr


@pytest.mark.slow
def test_supervisord_runs_the_box(tmp_path: Path) -> None:
    env = box_env(
        tmp_path,
        GN_CAMERAS='{"cam1": "testsrc:320x240@15"}',
        GN_PRE_SECONDS="3",
        GN_POST_SECONDS="2",
        GN_BUFFER_SECONDS="30",
        GN_COOLDOWN_SECONDS="0",
        GN_WORKERS="1",
        GN_RETRY_INTERVALS="1,1",
        # The button listener runs too, on gpiozero's mock pins (no GPIO on this machine).
        GN_TRIGGER_INPUT="gpio",
        GPIOZERO_PIN_FACTORY="mock",
    )
    supervisord = subprocess.Popen(
        [sys.executable, str(LAUNCHER), "--env-file", "/dev/null"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    ctl = [sys.executable, str(LAUNCHER), "--env-file", "/dev/null", "ctl"]
    conn = redis.Redis.from_url(env["GN_REDIS_URL"])
    device = env["GN_DEVICE_ID"]
    try:
        deadline = time.monotonic() + 60
        state: bytes | str = b""
        while time.monotonic() < deadline and state != b"recording":
            time.sleep(0.5)
            try:
                state = conn.hget(f"gn:{device}:cam:cam1:health", "state") or b""
                n_segments = conn.zcard(f"gn:{device}:cam:cam1:segments")
            except redis.RedisError:
                continue
        assert state == b"recording", "recorder never reported recording"
        while time.monotonic() < deadline and n_segments < 4:
            time.sleep(0.5)
            n_segments = conn.zcard(f"gn:{device}:cam:cam1:segments")
        status = subprocess.run([*ctl, "status"], env=env, capture_output=True, text=True, timeout=30)
        # redis, recorder-cam1, scheduler, ahead, worker-0, trigger, web (no upload worker: uploads off)
        assert status.stdout.count("RUNNING") == 7, status.stdout
        health = urllib.request.urlopen(f"http://127.0.0.1:{env['GN_WEB_PORT']}/healthz", timeout=10)
        assert health.status == 200

        press = subprocess.run(
            gravanois_cmd("trigger", "press", "--camera", "cam1", "--wait"),
            env={**env, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
        assert press.returncode == 0, press.stderr
        out = tmp_path / "data" / "highlights"
        sidecars = list(out.glob("highlight_cam1_*.json"))
        assert len(sidecars) == 1, press.stdout + press.stderr
        meta = json.loads(sidecars[0].read_text())
        assert meta["status"] == "watermarked"
        assert Path(meta["wm_path"]).is_file() and Path(meta["thumbnail_path"]).is_file()

        res = subprocess.run(
            gravanois_cmd("status", "--json"),
            env={**env, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
        )
        snap = json.loads(res.stdout)
        assert snap["cameras"][0]["recording"] is True and snap["counters"]["renders_ok"] == 1, res.stdout

        stop = subprocess.run([*ctl, "stop", "all"], env=env, capture_output=True, text=True, timeout=180)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert own_processes(str(tmp_path), exclude={supervisord.pid, os.getpid()}) == []
        # Logs: one rotated file per process under the data root, JSON lines from our processes.
        logs = tmp_path / "data" / "logs"
        for name in (
            "redis.log",
            "recorder-cam1.log",
            "worker-0.log",
            "trigger.log",
            "web.log",
            "supervisord.log",
        ):
            assert (logs / name).is_file(), name
        lines = [ln for ln in (logs / "recorder-cam1.log").read_text().splitlines() if ln.startswith("{")]
        assert lines and all(json.loads(ln)["process"] for ln in lines)
    finally:
        if supervisord.poll() is None:
            supervisord.send_signal(signal.SIGTERM)
            try:
                supervisord.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(supervisord.pid, signal.SIGKILL)
                supervisord.wait()
    assert own_processes(str(tmp_path), exclude={os.getpid()}) == []
