"""common.ids: the camera id, press id and highlight stem, made and read back by one module."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from common import ids, sidecar
from common.journal import PressRecord
from common.timeutil import compact, parse_compact

AT = datetime(2026, 12, 6, 5, 16, 28, 666000, tzinfo=UTC).timestamp()


def test_press_id_and_stem_are_made_and_read_back() -> None:
    assert ids.press_id("cam1", AT) == "cam1-20261206T051628666Z"
    assert ids.highlight_stem("cam1", AT) == "highlight_cam1_20261206T051628666Z"
    assert ids.parse_press_id("cam1-20261206T051628666Z") == ("cam1", AT)
    assert ids.parse_stem("highlight_cam1_20261206T051628666Z") == ("cam1", AT)
    # A camera id may hold dashes and underscores: the time at the end still splits it off.
    assert ids.parse_press_id(ids.press_id("court-2_a", AT)) == ("court-2_a", AT)
    assert ids.parse_stem(ids.highlight_stem("court-2_a", AT)) == ("court-2_a", AT)
    assert ids.press_id_of_stem("highlight_cam1_20261206T051628666Z") == "cam1-20261206T051628666Z"
    assert ids.stem_of_press_id("cam1-20261206T051628666Z") == "highlight_cam1_20261206T051628666Z"
    with pytest.raises(ValueError, match="not a press id"):
        ids.stem_of_press_id("highlight_cam1_20261206T051628666Z")


def test_the_journal_and_the_sidecar_name_presses_with_these_ids() -> None:
    press = PressRecord("cam1", AT, 5, 2)
    assert press.press_id == ids.press_id("cam1", AT)
    assert sidecar.clip_name(press) == ids.highlight_stem("cam1", AT) + ".mp4"


@pytest.mark.parametrize(
    "value",
    [
        "cam1-20261306T051628666Z",  # month 13: the shape of a time, not a time
        "cam1-20261206T051628666z",
        "cam1-20261206T051628666Z\n",
        "../cam1-20261206T051628666Z",
        "-cam1-20261206T051628666Z",
        "c" * 33 + "-20261206T051628666Z",
        "highlight_cam1_20261206T051628666Z",  # a stem is not a press id
        "",
        None,
        42,
    ],
)
def test_what_is_not_a_press_id(value: object) -> None:
    assert ids.parse_press_id(value) is None


@pytest.mark.parametrize(
    "value",
    ["highlight_cam1_20261206T051628666Z.mp4", "highlight_cam1_20261206T051628666Z_vertical", "cam1-x", None],
)
def test_what_is_not_a_stem(value: object) -> None:
    assert ids.parse_stem(value) is None
    with pytest.raises(ValueError, match="not a highlight name"):
        ids.press_id_of_stem(str(value))


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("cam1", True),
        ("Court_2-b", True),
        ("c" * 32, True),
        ("c" * 33, False),
        ("-cam", False),
        ("_cam", False),
        ("cam1\n", False),  # `$` would have let a trailing newline through
        ("cam/1", False),
        ("cam.1", False),
        ("", False),
        (None, False),
    ],
)
def test_camera_ids(value: object, ok: bool) -> None:
    assert ids.is_camera_id(value) is ok


def test_compact_time_round_trip() -> None:
    for at in (AT, 946684800.0, 1_700_000_000.001, 1_700_000_000.999):
        assert compact(parse_compact(compact(at))) == compact(at)
    with pytest.raises(ValueError, match="not a compact UTC time"):
        parse_compact("2026-12-06T05:16:28.666Z")
