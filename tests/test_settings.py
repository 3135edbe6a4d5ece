"""Settings: precedence, validation with one clear line, and .env.example in sync."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.settings import SettingsError, describe, load_settings, parse_open_hours
from tests.conftest import REPO, run_gravanois


def test_precedence_flag_beats_env_beats_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("GN_PRE_SECONDS=30\nGN_POST_SECONDS=8\nGN_SEG_TIME=2\n")
    monkeypatch.setenv("GN_POST_SECONDS", "6")
    s = load_settings({"seg_time": 0.5}, env_file=env_file)
    assert (s.pre_seconds, s.post_seconds, s.seg_time) == (30, 6, 0.5)


def test_defaults_match_the_issue() -> None:
    s = load_settings({"device_id": "box1"}, env_file=None)
    assert (s.pre_seconds, s.post_seconds, s.seg_time, s.buffer_seconds) == (40, 10, 1, 120)
    assert s.data_dir == Path("data") and s.buffer_dir == Path("/dev/shm/gravanois")
    assert [c.id for c in s.cameras] == ["cam1"]


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"GN_PRE_SECONDS": "-5"}, "GN_PRE_SECONDS"),
        ({"GN_SEG_TIME": "abc"}, "GN_SEG_TIME"),
        ({"GN_BUFFER_SECONDS": "30"}, "GN_BUFFER_SECONDS"),
        ({"GN_CAMERAS": "{not json"}, "GN_CAMERAS"),
        ({"GN_CAMERAS": '{"bad id!": "testsrc"}'}, "GN_CAMERAS"),
        ({"GN_RECORD_MODE": "fast"}, "GN_RECORD_MODE"),
        ({"GN_WM_OPACITY": "2"}, "GN_WM_OPACITY"),
        ({"GN_OPEN_HOURS": "8 to 5"}, "GN_OPEN_HOURS"),
        ({"GN_TIMEZONE": "Mars/Olympus"}, "GN_TIMEZONE"),
        ({"GN_REDIS_URL": "localhost:6379"}, "GN_REDIS_URL"),
    ],
)
def test_bad_values_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], needle: str
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SettingsError) as info:
        load_settings({"device_id": "box1"}, env_file=None)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_cameras_forms() -> None:
    s = load_settings(
        {
            "device_id": "b",
            "cameras": '{"a": "rtsp://h/s", "b": {"source": "/dev/video0", "mode": "encode"}}',
        },
        env_file=None,
    )
    assert [(c.id, c.source, c.mode) for c in s.cameras] == [
        ("a", "rtsp://h/s", ""),
        ("b", "/dev/video0", "encode"),
    ]
    with pytest.raises(SettingsError, match="unknown camera 'zz'"):
        s.camera("zz")


def test_open_hours_parse() -> None:
    assert parse_open_hours("08:00-12:00, 14:00-23:30") == [(480, 720), (840, 1410)]


def test_env_example_lists_every_setting_with_its_default() -> None:
    text = (REPO / ".env.example").read_text()
    for name, default, _help in describe():
        assert f"#{name}={default}\n" in text, f"{name} missing or stale in .env.example"


def test_cli_help_lists_every_process(settings) -> None:
    result = run_gravanois(settings, "--help")
    assert result.returncode == 0
    listed = result.stdout.split("Commands:")[1].split()
    for command in ("recorder", "trigger", "worker", "status", "failed", "metrics", "demo", "camera"):
        assert command in listed, f"`gravanois {command}` is not available"
