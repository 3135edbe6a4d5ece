"""common/verdict.py: one rule for "is this camera recording", read by status, the press, the build's wait
and the web dashboard from what the recorder published (its health hash, real Redis)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from starlette.requests import Request

from common import keys, verdict
from common.journal import PressRecord
from common.segments import SegmentIndex
from common.settings import Settings
from common.timeutil import parse_iso
from harness.recorder_helpers import RecorderProc, health
from harness.rtsp_server import RtspServer
from ops import snapshot
from ops.web import site as web_site
from ops.web.admin import Admin
from ops.web.auth import Auth
from recorder.health import Health
from tests.helpers import publish_health, run_gravanois, wait_for
from tests.test_web import PASSWORD, login
from tests.web_helpers import WebProc
from trigger import press as press_mod
from worker import build

# A limit no formula of the settings gives: only a reader of the published value finds it.
LIMIT = 7.3


def publish(s: Settings, conn: redis.Redis, t: float, **fields: object) -> None:
    """The health hash, as the recorder writes it (its own Health code)."""
    publish_health(Health(conn, s, "cam1", "testsrc", "copy"), t, **fields)


def panel_says(admin: Admin) -> bool:
    """What the web dashboard's camera card shows for cam1: recording or not."""
    english = Request({"type": "http", "query_string": b"lang=en", "headers": []})
    html = bytes(admin.site.page(english, "panel.html", **admin._dashboard({"csrf": "x"})).body).decode()
    card = html.split('data-camera="cam1"', 1)[1]
    label = re.search(r'<span class="(?:ok|error)">([^<]+)</span>', card)
    assert label is not None, card[:500]
    return {"recording": True, "NOT recording": False}[label.group(1)]


def test_status_press_build_and_web_all_flip_at_the_published_limit(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = make_settings(cooldown_seconds=0, pre_seconds=4, post_seconds=2)
    t = time.time()
    # Every reader's clock stops at t, so the last segment's age is exactly what the test wrote.
    for module in (snapshot, press_mod, build, web_site):
        monkeypatch.setattr(module, "now", lambda: t)
    site = web_site.Site(s, redis_conn)
    admin = Admin(site, Auth(site))
    answers = {}
    for age in (7.2, 7.4):
        # A 4 s GOP would give 11 s by the settings; the recorder says its watchdog uses 7.3 s.
        publish(s, redis_conn, t, state="recording", last_segment_end=t - age, keyframe_interval=4.0,
                stall_limit=LIMIT, run="77-1-abcdef")  # fmt: skip
        judged = verdict.verdict(redis_conn, s, "cam1", t)
        [cam] = snapshot.snapshot(s, redis_conn, highlights=0)["cameras"]
        problem = press_mod.camera_problem(s, redis_conn, PressRecord("cam1", t, 4, 2), t)
        answers[age] = {
            "verdict": judged.recording,
            "status": cam["recording"],
            "press": problem is None,
            "web dashboard": panel_says(admin),
            "web press": site.press_button("cam1", "web").state == press_mod.SCHEDULED,
        }
        # The build waits for the segment closing its window exactly as long as the recorder's watchdog
        # lets a camera go without one: the published limit.
        assert build.end_wait(s, redis_conn, "cam1") == LIMIT == cam["stall_limit"] == judged.stall_limit
        assert cam["run"] == judged.run == "77-1-abcdef"
    assert answers == {7.2: dict.fromkeys(answers[7.2], True), 7.4: dict.fromkeys(answers[7.4], False)}
    assert "7.3 s limit" in judged.why and "no new segment for 7 s" in judged.why


def test_before_the_first_report_the_limit_is_the_one_the_recorder_starts_with(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis
) -> None:
    s = make_settings(stall_seconds=6.0, seg_time=1.0)
    t = time.time()
    nobody = verdict.verdict(redis_conn, s, "cam1", t)
    assert not nobody.recording and nobody.state == verdict.ABSENT and nobody.stall_limit == 6.0
    assert "no recorder has reported for it: start `gravanois recorder --camera cam1`" in nobody.why
    assert build.end_wait(s, redis_conn, "cam1") == 6.0
    # A hash without the limit (a recorder older than it): the settings' limit for its keyframe interval,
    # by the function the recorder's watchdog uses.
    publish(s, redis_conn, t, state="recording", last_segment_end=t - 8.5, keyframe_interval=4.0)
    older = verdict.verdict(redis_conn, s, "cam1", t)
    assert older.stall_limit == verdict.limit_for(s, 4.0) == verdict.stall_limit(6.0, 1.0, 4.0) == 9.0
    assert older.recording and older.run == ""


@pytest.mark.parametrize("state", ["stopped", "starting"])
def test_a_recorder_restarted_on_purpose_is_judged_by_its_own_limit_plus_the_grace(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, state: str
) -> None:
    s = make_settings()
    t = time.time()
    grace = LIMIT + verdict.PLANNED_RESTART_GRACE
    publish(s, redis_conn, t, state=state, last_segment_end=t - grace + 0.1, stall_limit=LIMIT)
    assert not verdict.verdict(redis_conn, s, "cam1", t).recording  # not without the flag
    redis_conn.set(keys.restarting(s.device_id), "update to 0.1.1-abc", ex=60)
    judged = verdict.verdict(redis_conn, s, "cam1", t)
    assert judged.recording and "restarting on purpose" in judged.why
    assert not verdict.verdict(redis_conn, s, "cam1", t + 0.2).recording
    publish(s, redis_conn, t, state="backoff", last_segment_end=t - 1, stall_limit=LIMIT)
    assert not verdict.verdict(redis_conn, s, "cam1", t).recording  # a failure is not a planned restart


def test_a_dead_recorder_is_judged_by_the_limit_it_published_and_junk_is_no_number(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis
) -> None:
    s = make_settings()
    t = time.time()
    # Killed: the hash still says recording, and stops changing.
    publish(s, redis_conn, t - 60, state="recording", last_segment_end=t - 60, stall_limit=LIMIT)
    dead = verdict.verdict(redis_conn, s, "cam1", t)
    assert not dead.recording and dead.why == (
        "camera cam1 is not recording (no new segment for 60 s, past its recorder's 7.3 s limit)"
    )
    publish(s, redis_conn, t, state="recording", last_segment_end="nan", stall_limit="junk")
    junk = verdict.verdict(redis_conn, s, "cam1", t)
    assert not junk.recording and junk.last_segment_end is None and junk.stall_limit == verdict.limit_for(s)


# ---- a 4 s-GOP camera that freezes and comes back, read by every reader at once

# How long a reader may take to answer, and every reader to come round to the camera's new state.
PATIENCE = 120


@dataclass
class Reader:
    """One way the box answers "is cam1 recording?", sampled over and over: (time it judged, answer)."""

    name: str
    sample: Callable[[], tuple[float, Any]]
    seen: list[tuple[float, Any]] = field(default_factory=list)
    error: BaseException | None = None

    def poll(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self.seen.append(self.sample())
        except Exception as exc:  # told by `said`, at once, instead of as a reader that went quiet
            self.error = exc

    def said(self, answer: bool, since: float) -> bool:
        """One of its last three answers, judged after `since`, was `answer`."""
        if self.error is not None:
            raise AssertionError(f"the {self.name} reader failed: {self.error!r}") from self.error
        return any(t > since and v == answer for t, v in self.seen[-3:])


def status_reader(s: Settings) -> Callable[[], tuple[float, bool]]:
    def sample() -> tuple[float, bool]:
        snap = json.loads(run_gravanois(s, "status", "--json").stdout)
        [cam] = snap["cameras"]
        return parse_iso(snap["time"]), cam["recording"]

    return sample


def press_reader(s: Settings) -> Callable[[], tuple[float, bool]]:
    def sample() -> tuple[float, bool]:
        done = run_gravanois(s, "trigger", "press", "--camera", "cam1")
        outcome = re.match(r"(\S+) camera=cam1 at=(\S+) ", done.stdout)
        assert outcome is not None, done.stdout + done.stderr
        assert outcome[1] in ("scheduled", "refused"), done.stdout
        return parse_iso(outcome[2]), outcome[1] == "scheduled"

    return sample


def web_reader(web: WebProc, cookie: str) -> Callable[[], tuple[float, bool]]:
    # The web app runs at the lowest CPU priority (docs/web.md): on a test machine kept busy by other tests
    # it may answer many seconds late. Its page says when it judged, so a late answer is still a fair one.
    def sample() -> tuple[float, bool]:
        headers = {"Cookie": cookie, "Accept-Language": "en"}
        code, _, body = web.request("GET", "/admin/panel", headers, timeout=PATIENCE)
        assert code == 200
        html = body.decode()
        at = re.search(r'id="overall">\S+ at (\S+) ', html)
        assert at is not None, html[:300]
        card = html.split('data-camera="cam1"', 1)[1]
        label = re.search(r'<span class="(?:ok|error)">([^<]+)</span>', card)
        assert label is not None, card[:300]
        return parse_iso(at[1]), label[1] == "recording"

    return sample


def end_reader(s: Settings, conn: redis.Redis) -> Callable[[], tuple[float, float | None]]:
    """What every reader judges by: the end of the newest segment, as the recorder published it."""

    def sample() -> tuple[float, float | None]:
        t = time.time()
        end = verdict.number(health(conn, s, "cam1").get("last_segment_end"))
        time.sleep(0.1)
        return t, end

    return sample


def build_reader(s: Settings, conn: redis.Redis) -> Callable[[], tuple[float, float]]:
    """The build's view: how long past its window's end a build started now would wait for the segment
    closing it (the code path the build job takes)."""

    def sample() -> tuple[float, float]:
        t = time.time()
        wait = build.end_wait(s, conn, "cam1")
        time.sleep(0.2)
        return t, wait

    return sample


def crossing(readers: list[Reader], since: float, until: float, before: bool) -> float:
    """How far the readers contradict each other across one change (`before` → not `before`) seen in
    [since, until]: the latest time any reader still said `before` minus the earliest time any reader
    said the opposite. Negative: every reader changed its answer after every other reader's last old one."""
    samples = [(t, v) for r in readers for t, v in r.seen if since <= t <= until]
    old = max(t for t, v in samples if v == before)
    new = min(t for t, v in samples if v != before)
    return old - new


def flips(reader: Reader, since: float, until: float, before: bool) -> tuple[float | None, float]:
    """The bracket (last old answer, first new answer) of one reader's change within [since, until]; no
    old answer (None) when the reader's first answer in it is already the new one (it answered late)."""
    seen = [(t, v) for t, v in reader.seen if since <= t <= until]
    first_new = min(t for t, v in seen if v != before)
    return max((t for t, v in seen if v == before and t < first_new), default=None), first_new


@pytest.mark.slow
@pytest.mark.rtsp
@pytest.mark.skipif(not RtspServer.available(), reason="GStreamer RTSP server bindings not installed")
def test_a_frozen_4s_gop_camera_is_judged_alike_by_status_press_web_and_build_both_ways(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    server = RtspServer(gop_seconds=4).start()
    s = make_settings(
        cameras=json.dumps([{"id": "cam1", "source": server.url, "mode": "copy"}]),
        pre_seconds=2.0, post_seconds=1.0, cooldown_seconds=0, web_admin_password=PASSWORD,
    )  # fmt: skip
    rec = RecorderProc(s, "cam1", tmp_path / "logs")
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        with WebProc(s, tmp_path / "web.log") as web:
            # Recording, with the keyframe interval measured: the watchdog's limit is 8 s + (4 s - 1 s).
            h = wait_for(
                "the recorder's limit for a 4 s GOP",
                lambda: (
                    (x := health(redis_conn, s, "cam1")).get("state") == "recording"
                    and float(x.get("stall_limit") or 0) > verdict.limit_for(s)
                    and x
                ),
                timeout=60,
            )
            assert float(h["stall_limit"]) == pytest.approx(11.0, abs=0.3), h
            _, cookie, _ = login(web)
            readers = [
                Reader("status", status_reader(s)),
                Reader("press", press_reader(s)),
                Reader("web", web_reader(web, cookie)),
            ]
            builds = Reader("build", build_reader(s, redis_conn))
            ends = Reader("segment end", end_reader(s, redis_conn))
            threads = [
                threading.Thread(target=r.poll, args=(stop,), daemon=True) for r in [*readers, builds, ends]
            ]
            for thread in threads:
                thread.start()

            def all_say(answer: bool, since: float) -> bool:
                return all(r.said(answer, since) for r in readers)

            started = time.time()
            wait_for("every reader to say recording", lambda: all_say(True, started), timeout=PATIENCE)
            # The camera freezes: its connection stays open, no data flows.
            server.freeze()
            frozen = time.time()
            wait_for("every reader to say not recording", lambda: all_say(False, frozen), timeout=PATIENCE)
            time.sleep(2.0)
            server.thaw()
            back = time.time()
            wait_for("every reader to say recording again", lambda: all_say(True, back), timeout=PATIENCE)
            time.sleep(2.0)
            stop.set()
            for thread in threads:
                thread.join(30)
    finally:
        stop.set()
        code = rec.terminate()
        server.stop()
    assert code == 0
    assert [(r.name, r.error) for r in [*readers, builds, ends] if r.error] == []
    down = crossing(readers, frozen, back, before=True)
    up = crossing(readers, back, time.time(), before=False)
    brackets = {r.name: (flips(r, frozen, back, True), flips(r, back, time.time(), False)) for r in readers}
    print(
        f"contradiction going down {down:+.3f} s, coming back {up:+.3f} s; per reader (last old, first new)"
    )
    for name, (d, u) in brackets.items():
        went = [None if x is None else round(x - frozen, 2) for x in d]
        came = [None if x is None else round(x - back, 2) for x in u]
        print(f"  {name:7} down {went} s after the freeze, back {came} s after the thaw")
    # No reader says "recording" more than a second after another said "not recording", and back again.
    assert down < 1.0 and up < 1.0, brackets
    # And the change went by the watchdog's limit: not recording about 11 s after the end of the newest
    # segment the recorder had published (segments are dated by their stream: on a busy machine the camera's
    # stream runs seconds behind the clock, so that end may be well before the freeze, never after it).
    first_not = min(d[1] for d, _ in brackets.values())
    last = max(end for t, end in ends.seen if t < first_not and end is not None)
    assert last - frozen < 1.0, (last - frozen, ends.seen[-5:])
    assert 11.0 - 1.0 <= first_not - last <= 11.0 + 1.5, (first_not - last, brackets)
    # The run's last part, closed by stopping ffmpeg, is dated by its stream too: not past the freeze.
    run = SegmentIndex(redis_conn, s.device_id, "cam1").covering(frozen - 12, back)
    assert run[-1].end - frozen < 1.0 and len({x.run for x in run}) == 1, run
    # A build waits for the segment closing its window by that same limit, all along: through the stall,
    # the restart and the new run (which measures its keyframes again).
    assert {round(wait, 3) for _, wait in builds.seen} == {float(h["stall_limit"])}, builds.seen[:5]
