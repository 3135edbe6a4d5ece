"""The trigger: CLI press, cooldown, opening hours, journal + replay with Redis down, GPIO (mock pins),
serial (pty, unplug and re-plug), ENTER, clean shutdown, `press --wait`, a camera that is not recording
(refused at once, LED error pattern), a full data disk (a real 2 MiB tmpfs) and an input that dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis
from rq.registry import ScheduledJobRegistry

from common import journal, keys, sidecar, verdict
from common.journal import PressRecord
from common.pipeline import job_id, queue
from common.redisconn import members, text
from common.segments import Segment, SegmentIndex
from common.settings import Settings, SettingsError
from common.timeutil import iso, parse_iso
from harness.repo import REPO, gn_env, gravanois_cmd
from recorder.health import Health
from tests.build_helpers import make_segments
from tests.helpers import fetch, publish_health, run_gravanois, start_gravanois, wait_for
from trigger import press as press_mod
from trigger.inputs import serial as serial_input
from trigger.listen import Listener


def _settings(make_settings: Callable[..., Settings], **kw: object) -> Settings:
    base = {"pre_seconds": 5, "post_seconds": 2, "seg_time": 1, "buffer_seconds": 60, "cooldown_seconds": 0}
    return make_settings(**{**base, **kw})


def scheduled(conn: redis.Redis, s: Settings) -> list[str]:
    """The build jobs of accepted presses (queued at once; each waits for its own post-roll)."""
    return queue(s, "build", conn).get_job_ids()


def job_presses(conn: redis.Redis, s: Settings) -> list[dict]:
    return sorted((fetch(conn, j).args[0] for j in scheduled(conn, s)), key=lambda d: d["at"])


class Proc:
    """A `gravanois trigger listen` child with its log in a file."""

    def __init__(self, s: Settings, tmp: Path, *args: str, stdin: int | None = subprocess.DEVNULL) -> None:
        self.log_path = tmp / f"listen-{time.monotonic_ns()}.log"
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                gravanois_cmd("trigger", "listen", *args),
                env=gn_env(s),
                cwd=REPO,
                stdin=stdin,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def logged(self, text: str, times: int = 1) -> Callable[[], bool]:
        """A `wait_for` check: `text` is in the log at least `times` times."""
        return lambda: self.log().count(text) >= times

    def enter(self) -> None:
        """ENTER on the listener's stdin (started with `stdin=subprocess.PIPE`): a press."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"\n")
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        """EOF on the listener's stdin: the ENTER listener ends."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def stop(self, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


# ---- pure parts


def test_button_map_and_cameras(make_settings):
    s = make_settings(
        cameras=json.dumps({"cam1": "testsrc", "cam2": "testsrc"}),
        buttons=json.dumps({"17": "all", "27": "cam2", "BTN_9": ["cam2", "cam1"]}),
    )
    assert press_mod.button_map(s) == {"17": ["cam1", "cam2"], "27": ["cam2"], "BTN_9": ["cam2", "cam1"]}
    listener = Listener(s, redis.Redis())
    assert listener.cameras("BTN_1") == ["cam1"] and listener.cameras("BTN_2") == ["cam2"]
    assert listener.cameras("BTN_3") == [] and listener.cameras("BTN_REPLAY") == ["cam1", "cam2"]
    assert listener.cameras("27") == ["cam2"]
    with pytest.raises(SettingsError, match="unknown camera 'cam7'"):
        press_mod.button_map(make_settings(buttons='{"17": "cam7"}'))
    with pytest.raises(SettingsError, match="GN_BUTTONS is not valid JSON"):
        press_mod.button_map(make_settings(buttons="{17: all"))


def test_opening_hours_in_the_venue_time_zone(make_settings):
    s = make_settings(open_hours="08:00-23:00", timezone="America/Sao_Paulo")
    day = datetime(2025, 8, 17, 12, 0, tzinfo=ZoneInfo("America/Sao_Paulo")).timestamp()
    night = datetime(2025, 8, 17, 23, 30, tzinfo=ZoneInfo("America/Sao_Paulo")).timestamp()
    assert press_mod.is_open(s, day) and not press_mod.is_open(s, night)
    # 23:30 in São Paulo is 02:30 UTC: the zone, not UTC, decides
    late = make_settings(open_hours="22:00-02:00", timezone="America/Sao_Paulo")
    assert press_mod.is_open(late, night) and not press_mod.is_open(late, day)


def test_serial_tokens_and_port_detection(tmp_path):
    assert serial_input.parse_token(b"BTN_REPLAY\r\n") == "BTN_REPLAY"
    assert serial_input.parse_token(b"btn_2\n") == "BTN_2"
    assert serial_input.parse_token(b"hello") is None and serial_input.parse_token(b"\xff\xfe") is None
    assert serial_input.detect_port("", str(tmp_path / "*")) is None
    (tmp_path / "usb-Raspberry_Pi_Pico_E66-if00").touch()
    port = serial_input.detect_port("", str(tmp_path / "*"))
    assert port is not None and port.endswith("Pico_E66-if00")
    assert serial_input.detect_port(str(tmp_path / "nothing"), str(tmp_path / "*")) is None


# ---- the CLI press


def test_press_cli_queues_the_build_at_once(make_settings, redis_conn: redis.Redis, recording):
    s = _settings(make_settings)
    recording(s, redis_conn, "cam1")
    before = time.time()
    done = run_gravanois(s, "trigger", "press", "--camera", "cam1")
    after = time.time()
    assert done.returncode == 0, done.stderr
    [jid] = scheduled(redis_conn, s)
    job = fetch(redis_conn, jid)
    p = PressRecord(**job.args[0])
    assert before <= p.at <= after and p.pre == 5 and p.post == 2 and p.camera == "cam1"
    assert jid == job_id(s.device_id, p.press_id, "build") and jid in done.stdout
    assert str(s.clips_dir / sidecar.clip_name(p)) in done.stdout
    assert job.func_name == "worker.build.build_highlight" and job.retries_left == s.max_attempts - 1
    # GN_RETRY_INTERVALS=10,30,90 with 3 attempts: RQ's own choice for this job is 10 s, then 30 s
    assert job.get_retry_interval() == 10
    job.retries_left = 1
    assert job.get_retry_interval() == 30
    # Queued, not scheduled: no scheduler stands between a press and its clip.
    assert job.get_status() == "queued" and not ScheduledJobRegistry(queue=queue(s, "build", redis_conn))
    assert job.meta == {"stage": "build", "press_id": p.press_id, "at": p.at}
    pins = SegmentIndex(redis_conn, s.device_id, "cam1").pins()
    assert [(x.pin_id, round(x.start, 3), round(x.end, 3)) for x in pins] == [
        (p.press_id, round(p.at - 5, 3), round(p.at + 2, 3))
    ]
    assert not journal.pending(s.journal_dir)
    assert redis_conn.hget(keys.highlight(s.device_id, p.press_id), "state") == b"scheduled"
    assert redis_conn.hget(keys.counters(s.device_id), "presses") == b"1"


def test_press_at_a_past_time_and_all_cameras(make_settings, redis_conn: redis.Redis):
    s = _settings(make_settings, cameras=json.dumps({"cam1": "testsrc", "cam2": "testsrc"}))
    at = iso(time.time() - 30)
    for cam in ("cam1", "cam2"):  # what both cameras recorded then (a past press needs its window)
        SegmentIndex(redis_conn, s.device_id, cam).add(
            Segment(parse_iso(at) - 6, parse_iso(at) + 3, f"{cam}.ts")
        )
    done = run_gravanois(s, "trigger", "press", "--at", at)
    assert done.returncode == 0, done.stderr
    presses = job_presses(redis_conn, s)
    assert sorted(d["camera"] for d in presses) == ["cam1", "cam2"]
    assert all(abs(d["at"] - parse_iso(at)) < 0.001 for d in presses)
    future = run_gravanois(s, "trigger", "press", "--at", iso(time.time() + 3600))
    assert future.returncode == 2 and "in the future" in future.stderr
    # the worker's bounds, at once: a clock that was never set is not a press
    old = run_gravanois(s, "trigger", "press", "--at", "1990-01-01T00:00:00Z")
    assert old.returncode == 2 and old.stderr == (
        "error: --at 1990-01-01T00:00:00Z: press time 1990-01-01T00:00:00.000Z is before 2000: "
        "not a plausible press (is the clock set?)\n"
    )
    assert len(scheduled(redis_conn, s)) == 2
    unknown = run_gravanois(s, "trigger", "press", "--camera", "cam9")
    assert unknown.returncode == 2 and "unknown camera 'cam9'" in unknown.stderr


@pytest.mark.parametrize(("cooldown", "jobs"), [(0, 2), (30, 1)])
def test_cooldown(make_settings, redis_conn: redis.Redis, cooldown: float, jobs: int, recording):
    s = _settings(make_settings, cooldown_seconds=cooldown)
    recording(s, redis_conn, "cam1", "cam2")
    t = time.time()
    first = press_mod.submit(s, redis_conn, PressRecord("cam1", t - 2, 5, 2))
    second = press_mod.submit(s, redis_conn, PressRecord("cam1", t, 5, 2))
    assert first.state == press_mod.SCHEDULED
    assert second.state == (press_mod.SCHEDULED if jobs == 2 else press_mod.COOLDOWN)
    assert len(scheduled(redis_conn, s)) == jobs
    ignored = redis_conn.hget(keys.counters(s.device_id), "presses_ignored")
    assert (ignored or b"0") == str(2 - jobs).encode()
    assert not journal.pending(s.journal_dir)
    # another camera has its own cooldown
    other = make_settings(
        cameras=json.dumps({"cam1": "testsrc", "cam2": "testsrc"}), cooldown_seconds=cooldown
    )
    recording(other, redis_conn, "cam2")
    assert press_mod.submit(other, redis_conn, PressRecord("cam2", t, 5, 2)).state == press_mod.SCHEDULED
    # the same press handed over again (Redis cut the first hand-over short after the cooldown was
    # set; the journal replays it) is not its own duplicate
    again = PressRecord("cam1", t - 60, 5, 2)
    assert press_mod.cooldown_ok(s, redis_conn, again) and press_mod.cooldown_ok(s, redis_conn, again)


def test_press_outside_opening_hours_is_refused(make_settings, redis_conn: redis.Redis):
    local = datetime.now(UTC).astimezone(ZoneInfo("America/Sao_Paulo"))
    start, end = local + timedelta(hours=2), local + timedelta(hours=3)
    s = _settings(make_settings, open_hours=f"{start:%H:%M}-{end:%H:%M}")
    done = run_gravanois(s, "trigger", "press", "--camera", "cam1")
    assert done.returncode == 0
    assert "closed" in done.stdout and "outside opening hours" in done.stdout
    assert "press_refused" in done.stderr
    assert scheduled(redis_conn, s) == [] and not journal.pending(s.journal_dir)
    assert redis_conn.hget(keys.counters(s.device_id), "presses_ignored") == b"1"


# ---- Redis down: journal, then replay with the original time


def test_press_with_redis_down_is_journalled_and_replayed_by_the_listener(
    make_settings, private_redis, tmp_path
):
    s = _settings(make_settings, redis_url=private_redis.url)
    private_redis.stop()
    done = run_gravanois(s, "trigger", "press", "--camera", "cam1", timeout=30)
    assert done.returncode == 0, done.stderr
    assert "journalled" in done.stdout and "trigger listen" in done.stderr
    [journalled] = journal.pending(s.journal_dir)
    listener = Proc(s, tmp_path, "--input", "enter", stdin=subprocess.PIPE)
    try:
        time.sleep(1.0)
        listener.enter()  # a second press (ENTER) while Redis is still down
        wait_for("the ENTER press in the journal", lambda: len(journal.pending(s.journal_dir)) == 2, 15)
        pressed = journal.pending(s.journal_dir)
        time.sleep(2)
        private_redis.start()
        conn = private_redis.client()
        wait_for("both presses enqueued", lambda: len(scheduled(conn, s)) == 2, 20)
        presses = job_presses(conn, s)
        assert [d["at"] for d in presses] == [p.at for p in pressed]  # original times, time order
        assert presses[0]["at"] == journalled.at and presses[1]["source"] == "enter"
        wait_for("the journal emptied", lambda: not journal.pending(s.journal_dir), 10)
        assert conn.hget(keys.counters(s.device_id), "presses") == b"2"
        listener.close_stdin()
        assert listener.proc.wait(10) == 0, listener.log()
    finally:
        listener.stop()
    assert "press_replayed" in listener.log()


def test_listener_stops_on_sigterm_and_keeps_unsent_presses(make_settings, private_redis, tmp_path):
    s = _settings(make_settings, redis_url=private_redis.url)
    listener = Proc(s, tmp_path, "--input", "serial", "--port", str(tmp_path / "no-such-port"))
    try:
        wait_for("the listener waiting for its device", lambda: "serial_waiting" in listener.log(), 15)
        t0 = time.monotonic()
        assert listener.stop(10) == 0
        assert time.monotonic() - t0 < 10
    finally:
        listener.stop()
    assert "listener_stop" in listener.log()


# ---- GPIO with gpiozero's mock pins


def test_gpio_button_one_press_per_debounce_window(
    make_settings, redis_conn: redis.Redis, mock_pins, recording
):
    from trigger.inputs.gpio import GpioInput

    s = _settings(make_settings, gpio_debounce_ms=300, gpio_led_pin=27)
    recording(s, redis_conn, "cam1")
    listener = Listener(s, redis_conn)
    gpio = GpioInput([17], s.gpio_debounce_ms, listener.on_button, led_pin=27)
    listener.on_accept = gpio.accepted
    pin = mock_pins.pin(17)
    assert pin.state == 1  # pull-up: idle high
    try:
        t0 = time.time()
        for _ in range(4):  # a bouncing contact: low/high several times within a few ms
            pin.drive_low()
            pin.drive_high()
        assert listener.pending.qsize() == 1
        time.sleep(0.4)
        pin.drive_low()  # a second, real press after the debounce window
        pin.drive_high()
        assert listener.pending.qsize() == 2
        thread = threading.Thread(target=listener.run, daemon=True)
        thread.start()
        wait_for("two build jobs", lambda: len(scheduled(redis_conn, s)) == 2, 10)
        presses = job_presses(redis_conn, s)
        assert all(d["source"] == "gpio" and d["camera"] == "cam1" for d in presses)
        assert t0 <= presses[0]["at"] < presses[0]["at"] + 0.3 < presses[1]["at"]  # times taken at the pin
        # the status LED blinked for the accepted presses
        led = mock_pins.pin(27)
        wait_for("the LED blinking", lambda: len(led.states) >= 4, 5)
        listener.stop.set()
        thread.join(5)
        assert not thread.is_alive()
    finally:
        gpio.close()


# ---- serial: pty as the device, unplug and re-plug


def _plug(link: Path) -> int:
    master, slave = os.openpty()
    tmp = link.with_name(link.name + ".new")
    os.symlink(os.ttyname(slave), tmp)
    os.replace(tmp, link)
    os.close(slave)  # the listener opens the slave by path, like a real /dev/serial/by-id link
    return master


def test_serial_line_presses_and_replug_recovers(make_settings, redis_conn: redis.Redis, tmp_path, recording):
    s = _settings(make_settings, cameras=json.dumps({"cam1": "testsrc", "cam2": "testsrc"}))
    recording(s, redis_conn, "cam1", "cam2")
    link = tmp_path / "usb-Pico-if00"
    master = _plug(link)
    listener = Proc(s, tmp_path, "--input", "serial", "--port", str(link))
    try:
        wait_for("the port opened", lambda: listener.log().count("input_ready") == 1, 15)
        os.write(master, b"BTN_2\r\n")
        wait_for("a press of cam2", lambda: len(scheduled(redis_conn, s)) == 1, 10)
        assert [d["camera"] for d in job_presses(redis_conn, s)] == ["cam2"]
        # unplug: the device node goes away
        link.unlink()
        os.close(master)
        wait_for("the loss noticed", lambda: "serial_lost" in listener.log(), 10)
        time.sleep(1.5)
        master = _plug(link)  # re-plug: a new device behind the same stable name
        wait_for("the port reopened", lambda: listener.log().count("input_ready") == 2, 15)
        os.write(master, b"noise\nBTN_REPLAY\n")
        wait_for("a fan-out press", lambda: len(scheduled(redis_conn, s)) == 3, 10)
        cams = sorted(d["camera"] for d in job_presses(redis_conn, s)[1:])
        assert cams == ["cam1", "cam2"]
        assert all(d["source"] == "serial" for d in job_presses(redis_conn, s))
        assert listener.stop() == 0
    finally:
        listener.stop()
        os.close(master)


# ---- --wait


def test_press_wait_prints_the_rendered_path_last(make_settings, redis_conn: redis.Redis, tmp_path):
    s = _settings(make_settings, pre_seconds=4, post_seconds=2)
    base = time.time() - 20
    make_segments(s, redis_conn, "cam1", base, 15)
    worker = start_gravanois(s, "worker", "--queues", "build,render")
    try:
        done = run_gravanois(
            s, "trigger", "press", "--camera", "cam1", "--at", iso(base + 9), "--wait", timeout=120
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(15)
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last == str(s.output_dir / sidecar.clip_name(PressRecord("cam1", parse_iso(iso(base + 9)), 4, 2)))
    assert Path(last).is_file()


def test_press_without_a_recorder_is_refused_at_once(make_settings, redis_conn: redis.Redis):
    s = _settings(make_settings, cooldown_seconds=30)
    for args in (("--camera", "cam1"), ("--camera", "cam1", "--wait", "--timeout", "60")):
        done = run_gravanois(s, "trigger", "press", *args, timeout=30)
        assert done.returncode == 1, done.stdout + done.stderr
        assert done.stderr.splitlines()[-1] == (
            "error: press refused: camera cam1 is not recording (no recorder has reported for it: start "
            "`gravanois recorder --camera cam1`); it has no segment at all"
        )
        assert done.stdout.startswith("refused camera=cam1")
    assert scheduled(redis_conn, s) == [] and not journal.pending(s.journal_dir)
    assert redis_conn.get(keys.cooldown(s.device_id, "cam1")) is None  # a refused press starts no cooldown
    press_ids = [text(m) for m in members(redis_conn.zrange(keys.highlights(s.device_id), 0, -1))]
    assert len(press_ids) == 2
    for press_id in press_ids:
        state = redis_conn.hgetall(keys.highlight(s.device_id, press_id))
        assert state[b"state"] == b"failed" and b"no recorder has reported" in state[b"error"]


@pytest.mark.parametrize("state", ["stopped", "starting"])
def test_a_recorder_restarted_on_purpose_keeps_taking_presses_for_a_while(
    make_settings, redis_conn: redis.Redis, state: str
):
    """While an update restarts the programs (keys.restarting), a recorder stopping or starting is coming
    back: a press is taken if the camera recorded a moment ago; not without the flag, nor long after."""
    s = _settings(make_settings)
    t = time.time()
    publish_health(Health(redis_conn, s, "cam1", "testsrc", "copy"), t, state=state, last_segment_end=t - 9)
    SegmentIndex(redis_conn, s.device_id, "cam1").add(Segment(t - 10, t - 9, "seg.ts"))
    at = PressRecord("cam1", t, s.pre_seconds, s.post_seconds)
    assert "is not recording" in (press_mod.camera_problem(s, redis_conn, at, t) or "")
    redis_conn.set(keys.restarting(s.device_id), "update to 0.1.1-abc", ex=60)
    assert press_mod.camera_problem(s, redis_conn, at, t) is None
    # The recorder published no limit: the one its settings give, as common.verdict reads it.
    stale = verdict.limit_for(s) + verdict.PLANNED_RESTART_GRACE
    later = PressRecord("cam1", t - 9 + stale + 1, s.pre_seconds, s.post_seconds)
    assert "is not recording" in (press_mod.camera_problem(s, redis_conn, later, later.at) or "")


@pytest.mark.skipif(Path("/proc/device-tree/model").exists(), reason="a real Pi has pins")
def test_listen_gpio_without_pins_and_bad_button_map_stop_with_one_line(make_settings):
    s = _settings(make_settings)
    done = run_gravanois(s, "trigger", "listen", "--input", "gpio", timeout=30)
    assert done.returncode == 2
    assert done.stderr.startswith("error: GPIO pins [17] cannot be used") and done.stderr.count("\n") == 1
    bad = run_gravanois(_settings(make_settings, buttons='{"17": "cam7"}'), "trigger", "listen", timeout=30)
    assert bad.returncode == 2 and "GN_BUTTONS['17']: unknown camera 'cam7'" in bad.stderr


def test_replay_keeps_time_order_original_times_and_cooldown(make_settings, redis_conn: redis.Redis):
    s = _settings(make_settings, cooldown_seconds=30)
    t = time.time() - 60  # journalled during an outage
    presses = [
        PressRecord("cam1", t + 2, 5, 2, "gpio"),
        PressRecord("cam1", t, 5, 2, "gpio"),
        PressRecord("cam1", t + 40, 5, 2),
    ]
    for p in presses:
        journal.write(s.journal_dir, p)
    results = press_mod.replay(s, redis_conn)
    assert [(r.press.at, r.state) for r in results] == [
        (t, press_mod.SCHEDULED),
        (t + 2, press_mod.COOLDOWN),  # 2 s after the first one: a duplicate, by the original times
        (t + 40, press_mod.SCHEDULED),
    ]
    assert [d["at"] for d in job_presses(redis_conn, s)] == [t, t + 40]
    assert not journal.pending(s.journal_dir)
    assert press_mod.replay(s, redis_conn) == []


def test_press_wait_times_out_without_a_worker(make_settings, redis_conn: redis.Redis, recording):
    s = _settings(make_settings)
    recording(s, redis_conn, "cam1")
    done = run_gravanois(s, "trigger", "press", "--camera", "cam1", "--wait", "--timeout", "2", timeout=30)
    assert done.returncode == 1 and "timed out waiting for job gn-" in done.stderr
    assert len(scheduled(redis_conn, s)) == 1  # the press itself stands
