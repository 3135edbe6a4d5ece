"""The render budget's decision (common/budget.py): pure functions, checked on figures like the box's."""

from __future__ import annotations

import math

import pytest

from common.budget import (
    FIXED_SECONDS,
    NICE10_WEIGHT,
    PLANNED_PRESS_SECONDS,
    SWITCH_HEADROOM,
    TARGET_WAIT_SECONDS,
    Box,
    Option,
    RenderPath,
    Size,
    VideoEncoder,
    cost_key,
    decide,
    evaluate,
    fits,
    load_of,
    options,
    parse_cost_key,
    summary,
    usable,
    wait_seconds,
)
from ops.budget import lines

SW, HW = VideoEncoder.SOFTWARE, VideoEncoder.HARDWARE
SRC, P720 = Size.SOURCE, Size.P720
# A 1080p30 camera on this x86 machine (issue 21: the ahead encoder costs 0.42 CPU-s per video second);
# the 720p output about half of it.
X86_1080 = {(SW, SRC): 0.42, (SW, P720): 0.22}


def box(cpus: float, **kw: object) -> Box:
    base: dict[str, object] = {"reserve": 0.3, "pre_seconds": 40, "post_seconds": 10, "seg_seconds": 1}
    return Box(cpus=cpus, **{**base, **kw})  # type: ignore[arg-type]


def test_a_big_box_watermarks_every_camera_ahead_at_full_size() -> None:
    choices = decide(box(4), {"c1": X86_1080, "c2": X86_1080})
    assert [c.option for c in choices] == [Option(RenderPath.AHEAD, SW, SRC)] * 2
    assert all(c.continuous == 0.42 and c.wait < TARGET_WAIT_SECONDS for c in choices)


def test_a_load_is_the_ahead_encoder_and_the_builds_of_a_busy_court() -> None:
    b = box(4)
    # The ahead path's build encodes half a batch at each end of the window and the last segment.
    ahead = load_of(b, Option(RenderPath.AHEAD, SW, SRC), 0.42)
    assert ahead == pytest.approx(0.42 + (4 + 1) * 0.42 / PLANNED_PRESS_SECONDS)
    # The other paths encode the whole window at every press, nothing in between.
    for path in (RenderPath.PROGRESSIVE, RenderPath.SINGLE):
        assert load_of(b, Option(path, SW, SRC), 0.42) == pytest.approx(50 * 0.42 / PLANNED_PRESS_SECONDS)


def test_a_pi4_budget_with_two_1080p_cameras_cannot_afford_two_full_size_ahead_encoders() -> None:
    # 0.98 of a core here (docs/pi.md): 0.69 usable after the reserve; two full-size cameras take 1.12.
    b = box(0.98)
    assert not fits(b, evaluate(b, [("c1", Option(RenderPath.AHEAD, SW, SRC), 0.42)] * 2))
    choices = decide(b, {"c1": X86_1080, "c2": X86_1080})
    assert fits(b, choices) and sum(c.load for c in choices) <= 0.98 * 0.7
    # Full size on one camera does not fit either (0.56 + 0.26): both ahead at 720p, within the target.
    assert [c.option for c in choices] == [Option(RenderPath.AHEAD, SW, P720)] * 2
    assert all(c.wait <= TARGET_WAIT_SECONDS for c in choices)


def test_when_nothing_fits_the_least_loaded_choice_is_taken_and_said() -> None:
    only_full = {(SW, SRC): 0.42}
    b = box(0.98)
    choices = decide(b, {"c1": only_full, "c2": only_full})
    # Ahead costs 0.49 a camera at a busy court, a whole window per press 0.7: two of either overload.
    assert not fits(b, choices)
    assert [c.option.path for c in choices] == [RenderPath.AHEAD] * 2
    assert summary(b, choices)["fits"] is False


def test_forced_settings_narrow_the_options() -> None:
    costs = {(SW, SRC): 0.4, (SW, P720): 0.2, (HW, SRC): 0.1}
    assert len(options(box(2), costs)) == 9
    forced = box(2, path="single", encoder="software", size="source")
    assert options(forced, costs) == [Option(RenderPath.SINGLE, SW, SRC)]
    choices = decide(forced, {"c1": costs})
    assert choices[0].option == Option(RenderPath.SINGLE, SW, SRC)
    assert choices[0].continuous == 0


def test_paths_the_render_settings_switch_off_are_not_options() -> None:
    only_single = box(8, paths=(RenderPath.SINGLE,))
    assert {o.path for o in options(only_single, X86_1080)} == {RenderPath.SINGLE}
    assert decide(only_single, {"c1": X86_1080})[0].option.path is RenderPath.SINGLE


def test_a_forced_encoder_no_camera_has_is_refused_in_one_sentence() -> None:
    with pytest.raises(ValueError, match="camera c1 has no render option the settings allow"):
        decide(box(2, encoder="hardware"), {"c1": X86_1080})


def test_a_forced_path_that_does_not_fit_is_taken_and_said() -> None:
    b = box(0.5, path="ahead", size="source")
    choices = decide(b, {"c1": X86_1080, "c2": X86_1080})
    assert [c.option for c in choices] == [Option(RenderPath.AHEAD, SW, SRC)] * 2
    assert summary(b, choices)["fits"] is False


def test_the_hardware_encoder_is_taken_when_software_cannot_keep_the_wait() -> None:
    # A Pi 4 core is ~4x slower than one here: its software encode costs ~4x the CPU-s of x86's.
    slow = {(SW, SRC): 1.7, (SW, P720): 0.9, (HW, SRC): 0.15}
    choices = decide(box(2), {"c1": slow, "c2": slow})
    assert all(c.option.encoder is HW for c in choices)
    assert all(c.option.size is SRC for c in choices)


def test_wait_per_path_follows_the_work_left_after_the_post_roll() -> None:
    b = box(1)
    ahead = wait_seconds(b, Option(RenderPath.AHEAD, SW, SRC), 0.5, 1.0)
    progressive = wait_seconds(b, Option(RenderPath.PROGRESSIVE, SW, SRC), 0.5, 1.0)
    single = wait_seconds(b, Option(RenderPath.SINGLE, SW, SRC), 0.5, 1.0)
    # What came since the last batch (half a batch on average) and the last segment: 3 s of video.
    assert ahead == pytest.approx(FIXED_SECONDS + 3 * 0.5)
    # 50 s of video at 0.5 CPU-s each on one core: 25 CPU-s, 10 of them during the post-roll.
    assert progressive == pytest.approx(FIXED_SECONDS + 15 + 0.5)
    assert single == pytest.approx(FIXED_SECONDS + 25)
    assert ahead < progressive < single
    assert wait_seconds(b, Option(RenderPath.SINGLE, SW, SRC), 0.5, 0.0) == math.inf


def test_a_progressive_encode_the_post_roll_covers_leaves_only_the_last_segment() -> None:
    b = box(4, pre_seconds=5, post_seconds=10)
    wait = wait_seconds(b, Option(RenderPath.PROGRESSIVE, SW, SRC), 0.2, 2.0)
    assert wait == pytest.approx(FIXED_SECONDS + 0.2 / 2.0)


def test_cost_keys_read_back_and_the_summary_is_plain_data() -> None:
    for encoder in VideoEncoder:
        for size in Size:
            assert parse_cost_key(cost_key(encoder, size)) == (encoder, size)
    with pytest.raises(ValueError):
        parse_cost_key("software")
    b = box(2)
    published = summary(b, decide(b, {"c1": X86_1080}))
    assert published["cameras"]["c1"]["path"] == "ahead"
    assert published["box"]["cpus"] == 2
    assert set(published["cameras"]["c1"]) == {
        "path",
        "encoder",
        "size",
        "cost",
        "continuous",
        "load",
        "wait",
    }
    assert published["fits"] is True


def test_no_camera_no_decision() -> None:
    assert decide(box(1), {}) == []


def test_the_emulated_pi4_with_two_1080p_cameras_watermarks_both_ahead_one_at_720p() -> None:
    # bench/budget.py's measured costs on a quiet machine (docs/pi.md) in the Pi 4 budget with the
    # default reserve: two full-size cameras (0.79) do not fit in 0.73, one full and one 720p (0.73)
    # just do, and full size is what a player would rather have.
    costs = {(SW, SRC): 0.337, (SW, P720): 0.285}
    b = box(0.97, reserve=0.25)
    choices = decide(b, {"c1": costs, "c2": costs})
    assert fits(b, choices)
    assert [c.option.path for c in choices] == [RenderPath.AHEAD] * 2
    assert sorted(c.option.size for c in choices) == [P720, SRC]
    # The builds of both cameras at nice 0 against two ahead encoders at nice 10, each with half a
    # batch and the last segment left after the post-roll.
    share = 0.97 / (2 + 2 * NICE10_WEIGHT)
    for c in choices:
        assert c.wait == pytest.approx(FIXED_SECONDS + 3 * c.cost / share)
        assert c.wait < 3.5


def test_status_says_when_the_cameras_need_more_than_the_box_has() -> None:
    b = box(0.98)
    view = {
        "measured": True, "measured_at": "2026-12-06T12:00:00Z", "streams": {"c1": "1920x1080@30/1"},
        "cpus": 0.98, "reserve": 0.3, "costs": {}, "error": None, "hardware": "available",
    }  # fmt: skip
    for costs, over in (({(SW, SRC): 0.42}, True), (X86_1080, False)):
        published = summary(b, decide(b, {"c1": costs, "c2": costs}))
        shown = lines({**view, **{k: published[k] for k in ("continuous", "load", "fits", "cameras")}})
        assert shown[0].startswith("render budget: 0.98 CPU, 30% kept in reserve")
        assert (shown[1].startswith("OVER BUDGET: the cameras need more CPU than the box has")) is over


def test_a_decision_in_force_stays_while_it_fits_until_a_better_one_has_room_to_spare() -> None:
    # The emulated Pi 4 case: the batches correct the costs a little every minute. Two full-size cameras
    # fit the model; one camera was stepped down to 720p when its correction made them not fit.
    b = box(0.97, reserve=0.15)
    costs = {(SW, SRC): 0.33, (SW, P720): 0.28}
    full, small = Option(RenderPath.AHEAD, SW, SRC), Option(RenderPath.AHEAD, SW, P720)
    fresh = decide(b, {"c1": costs, "c2": costs})
    assert [c.option for c in fresh] == [full, full]  # without a decision in force: the best
    best_load = sum(c.load for c in fresh)
    assert usable(b) - SWITCH_HEADROOM * b.cpus < best_load <= usable(b)  # it fits, without room to spare
    current = {"c1": small, "c2": full}
    held = decide(b, {"c1": costs, "c2": costs}, current)
    assert [c.option for c in held] == [small, full]  # kept: a change would cost c1 its ahead cache
    # Cheaper batches later: full size for both now leaves room to spare, and c1 goes back to it.
    cheaper = {(SW, SRC): 0.25, (SW, P720): 0.22}
    assert [c.option for c in decide(b, {"c1": cheaper, "c2": cheaper}, current)] == [full, full]
    # Dearer batches: the decision in force no longer fits and gives way at once.
    dearer = {(SW, SRC): 0.42, (SW, P720): 0.32}
    moved = decide(b, {"c1": dearer, "c2": dearer}, current)
    assert fits(b, moved) and [c.option for c in moved] != [small, full]
    # A decision in force whose cameras wait over the target gives way to one that keeps the target.
    slow = {"c1": Option(RenderPath.SINGLE, SW, SRC), "c2": full}
    assert [c.option for c in decide(b, {"c1": costs, "c2": costs}, slow)] == [full, full]
    # Options in force that a camera may no longer take (a forced size) are not kept.
    forced = box(0.97, reserve=0.15, size=P720)
    assert [c.option for c in decide(forced, {"c1": costs, "c2": costs}, current)] == [small, small]


def test_the_summary_says_which_options_were_in_force_so_the_decision_can_be_made_again() -> None:
    b = box(0.97, reserve=0.15)
    costs = {"c1": {(SW, SRC): 0.30, (SW, P720): 0.26}, "c2": {(SW, SRC): 0.30, (SW, P720): 0.26}}
    current = {"c1": Option(RenderPath.AHEAD, SW, P720), "c2": Option(RenderPath.AHEAD, SW, SRC)}
    published = summary(b, decide(b, costs, current), current)
    assert published["held_from"] == {"c1": "ahead/software/720p", "c2": "ahead/software/source"}
    again = {cam: Option.parse(label) for cam, label in published["held_from"].items()}
    assert summary(b, decide(b, costs, again), again) == published
    with pytest.raises(ValueError):
        Option.parse("ahead/software")
