"""common/verdict.py: one rule for "is this camera recording", read by status, the press, the build's wait
and the web dashboard from what the recorder published (its health hash, real Redis)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
import redis

from common import keys, verdict
from common.journal import Press
from common.settings import Settings
from ops import status
from ops.web import app as web_app
from recorder.health import Health
from trigger import press as press_mod
from worker import build

# A limit no formula of the settings gives: only a reader of the published value finds it.
LIMIT = 7.3


def publish(s: Settings, conn: redis.Redis, t: float, **fields: object) -> None:
    """The health hash, as the recorder writes it (its own Health code)."""
    Health(conn, s, "cam1", "testsrc", "copy").publish(t, **fields)


def panel_says(web: web_app.WebApp) -> bool:
    """What the web dashboard's camera card shows for cam1: recording or not."""
    html = bytes(web.page("panel.html", **web._dashboard({"csrf": "x"})).body).decode()
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
    for module in (status, press_mod, build, web_app):
        monkeypatch.setattr(module, "now", lambda: t)
    web = web_app.WebApp(s, redis_conn)
    answers = {}
    for age in (7.2, 7.4):
        # A 4 s GOP would give 11 s by the settings; the recorder says its watchdog uses 7.3 s.
        publish(s, redis_conn, t, state="recording", last_segment_end=t - age, keyframe_interval=4.0,
                stall_limit=LIMIT, run="77-1-abcdef")  # fmt: skip
        judged = verdict.verdict(redis_conn, s, "cam1", t)
        [cam] = status.snapshot(s, redis_conn, highlights=0)["cameras"]
        problem = press_mod.camera_problem(s, redis_conn, Press("cam1", t, 4, 2), t)
        answers[age] = {
            "verdict": judged.recording,
            "status": cam["recording"],
            "press": problem is None,
            "web dashboard": panel_says(web),
            "web press": web._press("cam1", "web").state == press_mod.SCHEDULED,
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
