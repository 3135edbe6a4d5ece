"""The trigger under real faults: a full data disk (a real 2 MiB tmpfs), a camera whose recorder stopped
(a real recorder on the synthetic camera), an input whose reads fail, and the LED's error pattern."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from common import journal, keys
from common.redisconn import members, text
from common.segments import SegmentIndex
from common.timeutil import iso
from common.verdict import verdict
from harness.recorder_helpers import TEST_SOURCE, RecorderProc, health
from harness.repo import REPO, gn_env, gravanois_cmd
from tests.helpers import run_gravanois, wait_for
from tests.test_trigger import (
    Proc,
    _settings,
    job_presses,
    scheduled,
)
from trigger import press as press_mod
from trigger.listen import Listener

NO_SPACE = "No space left on device"


class FullDisk:
    """A real 2 MiB tmpfs mounted for one test, filled to the last byte by one file."""

    def __init__(self, mount: Path) -> None:
        self.mount = mount
        self.filler = mount / "filler.bin"

    def fill(self) -> None:
        """Write until the file system says ENOSPC, then prove a small write fails too."""
        with open(self.filler, "ab") as fh:
            try:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
        with pytest.raises(OSError) as info, open(self.mount / "probe", "wb") as fh:
            fh.write(b"x" * 4096)
            fh.flush()
        assert info.value.errno == errno.ENOSPC
        (self.mount / "probe").unlink()

    def free(self) -> None:
        """Space is back: the filler goes."""
        self.filler.unlink()


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[FullDisk]:
    """A size-limited tmpfs (the data disk), full; unmounted at the end."""
    mount = tmp_path / "data-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"mounting a 2 MiB tmpfs is not permitted here: {done.stderr.strip() or done.returncode}")
    disk = FullDisk(mount)
    try:
        (mount / "data" / "journal").mkdir(parents=True)  # a box's data dir exists before it fills up
        disk.fill()
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)


# ---- a full data disk


def test_full_disk_with_redis_up_the_press_goes_to_redis(
    make_settings, redis_conn: redis.Redis, full_disk: FullDisk, recording
):
    s = _settings(make_settings, data_dir=full_disk.mount / "data")
    recording(s, redis_conn, "cam1")
    done = run_gravanois(s, "trigger", "press", "--camera", "cam1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("scheduled camera=cam1") and "Traceback" not in done.stderr
    [p] = job_presses(redis_conn, s)
    assert p["camera"] == "cam1" and not journal.pending(s.journal_dir)


def test_full_disk_and_redis_down_the_press_says_so_then_is_kept_once_space_is_back(
    make_settings, private_redis, full_disk: FullDisk, recording
):
    s = _settings(make_settings, data_dir=full_disk.mount / "data", redis_url=private_redis.url)
    private_redis.stop()
    lost = run_gravanois(s, "trigger", "press", "--camera", "cam1", timeout=30)
    assert lost.returncode == 1
    assert "Traceback" not in lost.stderr
    assert lost.stderr.splitlines()[-1] == (
        f"error: press for camera cam1 not saved: Redis is not answering and the journal in "
        f"{s.journal_dir} cannot be written ({NO_SPACE}): free space on the data disk or start Redis, "
        "then press again"
    )
    assert lost.stdout.startswith("not-saved camera=cam1")
    full_disk.free()
    kept = run_gravanois(s, "trigger", "press", "--camera", "cam1", timeout=30)
    assert kept.returncode == 0 and kept.stdout.startswith("journalled camera=cam1"), kept.stderr
    [journalled] = journal.pending(s.journal_dir)
    private_redis.start()
    conn = private_redis.client()
    recording(s, conn, "cam1")
    again = run_gravanois(s, "trigger", "press", "--camera", "cam1", timeout=30)  # replays the journal first
    assert again.returncode == 0, again.stderr
    presses = job_presses(conn, s)
    assert len(presses) == 2 and presses[0]["at"] == journalled.at
    assert not journal.pending(s.journal_dir)


def test_listener_survives_a_full_disk_and_takes_every_press(
    make_settings, private_redis, full_disk: FullDisk, recording, tmp_path: Path
):
    s = _settings(make_settings, data_dir=full_disk.mount / "data", redis_url=private_redis.url)
    private_redis.stop()
    listener = Proc(s, tmp_path, "--input", "enter", stdin=subprocess.PIPE)
    try:
        wait_for("the listener ready", lambda: "input_ready" in listener.log(), 15)
        for n in (1, 2):  # Redis down and the journal's disk full: each press is held, the loop goes on
            listener.enter()
            wait_for(f"press {n} reported", listener.logged("press_not_saved", n), 15)
        assert listener.proc.poll() is None, listener.log()
        assert NO_SPACE in listener.log()
        full_disk.free()
        wait_for("both held presses journalled", lambda: len(journal.pending(s.journal_dir)) == 2, 15)
        pressed = journal.pending(s.journal_dir)
        private_redis.start()
        conn = private_redis.client()
        recording(s, conn, "cam1")
        wait_for("both presses enqueued", lambda: len(scheduled(conn, s)) == 2, 20)
        assert [d["at"] for d in job_presses(conn, s)] == [p.at for p in pressed]  # original times
        wait_for("the journal emptied", lambda: not journal.pending(s.journal_dir), 10)
        full_disk.fill()  # full again, Redis up: a new press does not need the disk at all
        listener.enter()
        wait_for("the third press enqueued", lambda: len(scheduled(conn, s)) == 3, 15)
        listener.close_stdin()
        assert listener.proc.wait(15) == 0, listener.log()
    finally:
        listener.stop()
    assert "Traceback" not in listener.log()


# ---- an input that cannot read


def test_an_input_that_keeps_failing_ends_the_listener_with_one_line(make_settings):
    """The write end of a pipe as standard input: every read fails (EBADF), for real, forever."""
    s = _settings(make_settings)
    read_end, write_end = os.pipe()
    try:
        done = subprocess.run(
            gravanois_cmd("trigger", "listen", "--input", "enter"),
            env=gn_env(s),
            cwd=REPO,
            stdin=write_end,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.close(read_end)
        os.close(write_end)
    assert done.returncode == 1, (
        done.stderr
    )  # not 0: supervisord restarts a listener that exits with an error
    assert done.stderr.count('"input_error"') == 5  # each failure logged, and tried again
    assert done.stderr.splitlines()[-1] == (
        "error: enter-input stopped: OSError: [Errno 9] Bad file descriptor; "
        "the listener exits so that it is started again"
    )


# ---- a camera that is not recording


def test_press_refused_when_the_recorder_stopped_and_the_reason_names_the_right_time(
    make_settings, redis_conn: redis.Redis, tmp_path: Path
):
    s = _settings(
        make_settings,
        cameras=json.dumps({"cam1": TEST_SOURCE}),
        pre_seconds=2,
        post_seconds=1,
        restart_backoff_max=1.0,
    )
    index = SegmentIndex(redis_conn, s.device_id, "cam1")
    rec = RecorderProc(s, "cam1", tmp_path / "logs")
    try:
        wait_for("recording", lambda: health(redis_conn, s, "cam1").get("state") == "recording", 60)
        taken = run_gravanois(s, "trigger", "press", "--camera", "cam1")
        assert taken.returncode == 0 and taken.stdout.startswith("scheduled"), taken.stderr
    finally:
        rec.terminate(15)
    stopped = time.time()
    last = index.latest()
    assert last is not None
    assert health(redis_conn, s, "cam1")["state"] == "stopped"
    refused = run_gravanois(s, "trigger", "press", "--camera", "cam1")
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[-1] == (
        f"error: press refused: camera cam1 is not recording (its recorder reports stopped); "
        f"its last segment before the press ended {iso(last.end)}"
    )
    [failed] = [
        text(m)
        for m in members(redis_conn.zrange(keys.highlights(s.device_id), 0, -1))
        if redis_conn.hget(keys.highlight(s.device_id, text(m)), "state") == b"failed"
    ]
    assert iso(last.end) in text(redis_conn.hget(keys.highlight(s.device_id, failed), "error") or b"")

    # The camera records again; a press asked later for a moment of the outage names the last segment
    # before its window, not the newest one (which is after it).
    at = stopped + 3.0  # window [stopped + 1, stopped + 4]: nothing recorded
    time.sleep(max(0.0, stopped + 5.0 - time.time()))
    rec = RecorderProc(s, "cam1", tmp_path / "logs")
    try:
        wait_for("recording again", lambda: health(redis_conn, s, "cam1").get("state") == "recording", 60)
        stale = verdict(redis_conn, s, "cam1", time.time()).stall_limit
        wait_for("the outage press in the past", lambda: time.time() > at + stale + 1, stale + 10)
        late = run_gravanois(s, "trigger", "press", "--camera", "cam1", "--at", iso(at))
        newest = index.latest()
    finally:
        rec.terminate(15)
    assert newest is not None and newest.end > at + 1
    assert late.returncode == 1
    assert late.stderr.splitlines()[-1] == (
        f"error: press refused: camera cam1 recorded nothing in the window {iso(at - 2)} to {iso(at + 1)}; "
        f"its last segment before the press ended {iso(last.end)}"
    )


def test_led_flickers_when_the_camera_is_not_recording(make_settings, redis_conn: redis.Redis, mock_pins):
    from trigger.inputs.gpio import ACCEPTED_BLINKS, ERROR_BLINKS, GpioInput

    s = _settings(make_settings, gpio_led_pin=27)  # no recorder reports for cam1
    listener = Listener(s, redis_conn)
    gpio = GpioInput([17], s.gpio_debounce_ms, listener.on_button, led_pin=27)
    listener.on_accept, listener.on_refuse = gpio.accepted, gpio.refused
    thread = threading.Thread(target=listener.run, daemon=True)
    thread.start()
    try:
        mock_pins.pin(17).drive_low()
        mock_pins.pin(17).drive_high()
        wait_for("the press answered", lambda: listener.outcomes, 10)
        assert [o.state for o in listener.outcomes] == [press_mod.REFUSED]
        led = mock_pins.pin(27)
        blinks = ERROR_BLINKS[2]
        wait_for("the LED's error pattern", lambda: len(led.states) >= 1 + 2 * blinks, 10)
        assert sum(1 for st in led.states[1:] if st.state) == blinks != ACCEPTED_BLINKS[2]
        [press_id] = [text(m) for m in members(redis_conn.zrange(keys.highlights(s.device_id), 0, -1))]
        assert redis_conn.hget(keys.highlight(s.device_id, press_id), "state") == b"failed"
        assert scheduled(redis_conn, s) == []
    finally:
        listener.stop.set()
        thread.join(5)
        gpio.close()
