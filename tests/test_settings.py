"""Settings: precedence, validation with one clear line, and .env.example in sync."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path
from typing import Any

import pytest

from common.hours import parse_open_hours
from common.pipeline import retry_intervals, retry_policy
from common.settings import (
    CONCERNS,
    Settings,
    SettingsError,
    describe,
    env_name,
    load_settings,
    to_env,
)
from common.settings.core import FIELDS, parser_of
from common.settings.fields import rule_of
from harness.repo import REPO, gn_env, gravanois_cmd
from tests.helpers import run_gravanois


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


def test_a_camera_may_carry_the_name_people_read() -> None:
    s = load_settings(
        {
            "device_id": "b",
            "cameras": '{"cam1": {"source": "testsrc", "name": " Quadra Central "}, "b": "x"}',
        },
        env_file=None,
    )
    assert [(c.id, c.name, c.label) for c in s.cameras] == [
        ("cam1", "Quadra Central", "Quadra Central"),
        ("b", "", "b"),
    ]
    # the name is kept where the settings travel to child processes
    again = load_settings({"device_id": "b", "cameras": to_env(s)["GN_CAMERAS"]}, env_file=None)
    assert again.cameras == s.cameras


@pytest.mark.parametrize(
    ("cameras", "message"),
    [
        (
            '{"cam1": {"source": "testsrc", "name": 7}}',
            "GN_CAMERAS: the name of camera 'cam1' must be text, like \"Quadra Central\"",
        ),
        (
            '{"cam1": {"source": "testsrc", "name": "' + "x" * 41 + '"}}',
            "GN_CAMERAS is not valid: camera 'cam1' name must be at most 40 printable characters on one line",
        ),
        (
            '{"cam1": {"source": "testsrc", "name": "Quadra\\n1"}}',
            "GN_CAMERAS is not valid: camera 'cam1' name must be at most 40 printable characters on one line",
        ),
        (
            '{"cam1": {"source": "testsrc", "title": "Quadra"}}',
            "GN_CAMERAS: unknown key(s) ['title']; use id, source, mode and name",
        ),
    ],
)
def test_a_bad_camera_name_is_refused_in_one_sentence(
    monkeypatch: pytest.MonkeyPatch, cameras: str, message: str
) -> None:
    assert refusal(monkeypatch, {"GN_CAMERAS": cameras}) == message


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("pt-BR,fr", "GN_POSTER_LANGUAGES is not valid: fr is not one of pt-BR, es, en"),
        ("pt-BR,es,en", "GN_POSTER_LANGUAGES is not valid: name at most 2 languages, like pt-BR,es"),
    ],
)
def test_poster_languages_are_the_web_app_s_languages(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    assert refusal(monkeypatch, {"GN_POSTER_LANGUAGES": value}) == message
    monkeypatch.setenv("GN_POSTER_LANGUAGES", " es , pt-BR ")
    assert load_settings({"device_id": "box1"}, env_file=None).poster_languages == ("es", "pt-BR")


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
    for command in (
        "recorder",
        "trigger",
        "worker",
        "scheduler",
        "status",
        "failed",
        "metrics",
        "demo",
        "web",
        "camera",
    ):
        assert command in listed, f"`gravanois {command}` is not available"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"GN_DEVICE_ID": ""},
            "GN_DEVICE_ID is set but empty: give it a value, or remove the line to use the default "
            "(the host name)",
        ),
        ({"GN_SEG_TIME": "  "}, "GN_SEG_TIME is set but empty"),
        ({"GN_PRE_SECONDS": "nan"}, "GN_PRE_SECONDS='nan' is not valid: set it to a finite number"),
        ({"GN_POST_SECONDS": "-inf"}, "GN_POST_SECONDS='-inf' is not valid: set it to a finite number"),
        ({"GN_PRE_SECONDS": "1e9"}, "GN_PRE_SECONDS is not valid: it must be from 0 to 900 seconds"),
        ({"GN_POST_SECONDS": "901"}, "GN_POST_SECONDS is not valid: it must be from 0 to 900 seconds"),
        (
            {"GN_SEG_TIME": "1e9"},
            "GN_SEG_TIME is not valid: it must be more than 0 and at most 60 seconds",
        ),
    ],
)
def test_out_of_range_values_blame_their_own_setting(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SettingsError) as info:
        load_settings(None if "GN_DEVICE_ID" in env else {"device_id": "box1"}, env_file=None)
    assert str(info.value).startswith(message), str(info.value)
    assert "GN_BUFFER_SECONDS" not in str(info.value) and "\n" not in str(info.value)


def test_empty_values_that_mean_something_stay_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GN_OPEN_HOURS", "GN_API_BASE", "GN_BUTTONS", "GN_WM_LOGO2"):
        monkeypatch.setenv(name, "")
    s = load_settings({"device_id": "box1"}, env_file=None)
    assert s.open_hours == "" and s.api_base == "" and s.wm_logo2 is None


def test_a_nan_from_a_flag_is_refused_too() -> None:
    with pytest.raises(SettingsError, match="GN_PRE_SECONDS is not valid: it must be a finite number"):
        load_settings({"device_id": "box1", "pre_seconds": float("nan")}, env_file=None)


def test_device_id_empty_stops_a_process_with_one_line(settings) -> None:
    env = {**gn_env(settings), "GN_DEVICE_ID": ""}
    done = subprocess.run(
        gravanois_cmd("trigger", "press"), env=env, capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert done.returncode == 2
    assert done.stderr == (
        "error: GN_DEVICE_ID is set but empty: give it a value, or remove the line to use the default "
        "(the host name)\n"
    )


def test_retry_intervals_one_wait_per_retry_first_interval_first() -> None:
    # GN_RETRY_INTERVALS=10,30,90 with 3 attempts: two retries, after 10 s then 30 s.
    assert retry_intervals(3, (10, 30, 90)) == [10, 30]
    assert retry_intervals(5, (10, 30)) == [10, 30, 30, 30]  # the last interval repeats
    assert retry_intervals(1, (10, 30, 90)) == []
    policy = retry_policy(load_settings({"device_id": "box1", "retry_intervals": "10,30,90"}, env_file=None))
    assert policy is not None and policy.max == 2 and policy.intervals == [10, 30]


def test_settings_is_the_concerns_fields_each_declaring_a_help_and_a_parser() -> None:
    assert [f.name for f in FIELDS] == [f.name for c in CONCERNS for f in dataclasses.fields(c)]
    assert dataclasses.is_dataclass(Settings) and Settings.__dataclass_params__.frozen  # type: ignore[attr-defined]
    for f in FIELDS:
        rule = rule_of(f)
        assert rule.help.endswith("."), f.name
        parser = parser_of(f)
        if f.default not in (dataclasses.MISSING, None):
            # The text a default is written as (.env.example, children's environment) reads back as it.
            assert parser.read(parser.write(f.default)) == f.default, f.name


def env_example_sections() -> dict[str, str]:
    """The sections of .env.example (`# ---- title`), title → its lines."""
    text = (REPO / ".env.example").read_text()
    return dict(part.strip().split("\n", 1) for part in text.split("\n# ---- ")[1:])


def test_env_example_has_one_section_per_concern_with_each_setting_its_meaning_and_default() -> None:
    rows = {name: (default, help) for name, default, help in describe()}
    sections = env_example_sections()
    assert list(sections) == [c.title for c in CONCERNS]
    for concern in CONCERNS:
        names = [env_name(f.name) for f in dataclasses.fields(concern)]
        expected = "\n\n".join(f"# {rows[n][1]}\n#{n}={rows[n][0]}" for n in names)
        assert sections[concern.title] == expected, f"section {concern.title!r} of .env.example is stale"


def refusal(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> str:
    """The one line that settings loaded with these variables are refused with."""
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SettingsError) as info:
        load_settings({"device_id": "box1"}, env_file=None)
    return str(info.value)


def outside(f: dataclasses.Field[Any]) -> list[str]:
    """Values just outside what a field declares: not one of its choices, past each of its bounds."""
    rule = rule_of(f)
    values = [f"not-{rule.choices[0]}"] if rule.choices else []
    if rule.at_least is not None:
        values.append(f"{rule.at_least - 1:g}")
    if rule.above is not None:
        values.append(f"{rule.above:g}")
    if rule.at_most is not None:
        values.append(f"{rule.at_most + 1:g}")
    return values


def inside(f: dataclasses.Field[Any]) -> list[str]:
    """The edges a field allows: each of its choices, each inclusive bound."""
    rule = rule_of(f)
    bounds = [b for b in (rule.at_least, rule.at_most) if b is not None]
    return [*rule.choices, *(f"{b:g}" for b in bounds)]


OUTSIDE = [pytest.param(f, v, id=f"{env_name(f.name)}={v}") for f in FIELDS for v in outside(f)]
INSIDE = [pytest.param(f, v, id=f"{env_name(f.name)}={v}") for f in FIELDS for v in inside(f)]


def test_the_declared_ranges_and_choices_are_found() -> None:
    declared = {f.name for f in FIELDS if outside(f)}
    assert {"seg_time", "cooldown_seconds", "wm_crf", "log_level", "workers", "trigger_input"} <= declared


@pytest.mark.parametrize(("f", "value"), OUTSIDE)
def test_a_value_outside_a_declared_range_or_choices_is_refused_naming_its_setting(
    monkeypatch: pytest.MonkeyPatch, f: dataclasses.Field[Any], value: str
) -> None:
    name = env_name(f.name)
    rule = rule_of(f)
    what = f"use one of {', '.join(rule.choices)}" if rule.choices else rule.range_text()
    assert refusal(monkeypatch, {name: value}) == f"{name} is not valid: {what}"


@pytest.mark.parametrize(("f", "value"), INSIDE)
def test_the_edges_of_a_declared_range_and_every_choice_are_allowed(
    monkeypatch: pytest.MonkeyPatch, f: dataclasses.Field[Any], value: str
) -> None:
    monkeypatch.setenv("GN_BUFFER_SECONDS", "10000")  # room for the longest window and segments
    monkeypatch.setenv(env_name(f.name), value)
    s = load_settings({"device_id": "box1"}, env_file=None)
    assert getattr(s, f.name) == parser_of(f).read(value)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GN_WORKERS": "many"}, "GN_WORKERS='many' is not valid: set it to a whole number"),
        (
            {"GN_WORKERS": "-1"},
            "GN_WORKERS is not valid: it cannot be negative (0 means one per camera and one more)",
        ),
        ({"GN_TRIGGER_INPUT": "enter"}, "GN_TRIGGER_INPUT is not valid: use one of gpio, serial"),
        (
            {"GN_TRIGGER_AUTOSTART": "maybe"},
            "GN_TRIGGER_AUTOSTART='maybe' is not valid: set it to true or false",
        ),
        ({"GN_COOLDOWN_SECONDS": "-1"}, "GN_COOLDOWN_SECONDS is not valid: it cannot be negative"),
        (
            {"GN_STALL_SECONDS": "-1"},
            "GN_STALL_SECONDS is not valid: it cannot be negative (0 means automatic)",
        ),
        ({"GN_WEB_DAYS": "0"}, "GN_WEB_DAYS is not valid: it must be more than 0 days"),
    ],
)
def test_supervision_values_are_refused_in_one_line_like_the_others(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    assert refusal(monkeypatch, env) == message


def test_to_env_reads_back_as_the_same_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings(
        {
            "device_id": "box1",
            "cameras": '[{"id": "a", "source": "rtsp://h/s"}, '
            '{"id": "b", "source": "/dev/video0", "mode": "encode"}]',
            "retry_intervals": "5,60",
            "wm_logo2": "/tmp/second.png",
            "log_level": "debug",
            "trigger_autostart": "off",
            "workers": "3",
        },
        env_file=None,
    )
    for name, text in to_env(s).items():
        monkeypatch.setenv(name, text)
    assert load_settings(env_file=None) == s
    assert s.log_level == "DEBUG" and s.workers == 3 and s.trigger_autostart is False


def test_secrets_are_the_settings_declared_secret() -> None:
    declared = {f.name for f in FIELDS if rule_of(f).secret}
    assert declared == {"api_token", "device_secret", "web_admin_password"}
    s = load_settings({"device_id": "box1", **{name: f"{name}-value" for name in declared}}, env_file=None)
    assert sorted(s.secrets()) == sorted(f"{name}-value" for name in declared)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"GN_RENDER_PATH": "ahead", "GN_WM_AHEAD": "false"},
            "GN_RENDER_PATH is not valid: ahead needs GN_WM_AHEAD=true",
        ),
        (
            {"GN_RENDER_PATH": "progressive", "GN_WM_PROGRESSIVE": "false"},
            "GN_RENDER_PATH is not valid: progressive needs GN_WM_PROGRESSIVE=true",
        ),
        (
            {"GN_RENDER_ENCODER": "software", "GN_WM_ENCODER": "h264_v4l2m2m"},
            "GN_RENDER_ENCODER is not valid: software contradicts GN_WM_ENCODER=h264_v4l2m2m",
        ),
        ({"GN_RENDER_SIZE": "1080p"}, "GN_RENDER_SIZE is not valid: use one of auto, source, 720p"),
        ({"GN_RENDER_RESERVE": "0.95"}, "GN_RENDER_RESERVE is not valid: it must be from 0 to 0.9"),
    ],
)
def test_a_forced_render_path_the_other_settings_switch_off_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    assert refusal(monkeypatch, env) == message


def test_a_forced_single_pass_goes_with_the_progressive_render_switched_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GN_RENDER_PATH", "single")
    monkeypatch.setenv("GN_WM_PROGRESSIVE", "false")
    assert load_settings({"device_id": "box1"}, env_file=None).render_path == "single"
