"""The render budget measured (worker/budget.py): CPU from the child's rusage, the box's CPU from its
cgroup, each camera's newest segments through the real watermark encoder, the result kept in Redis and
measured again only when the cameras or the watermark change."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from starlette.requests import Request

from common import keys
from common.ffmpeg import FFmpegError, base_args, probe
from common.segments import Segment, SegmentIndex
from common.settings import Settings
from harness.media import make_logo, segment_stream
from ops.fleet import report
from ops.snapshot import snapshot
from ops.web.site import Site
from tests.build_helpers import make_segments
from tests.helpers import run_gravanois
from worker import budget, progressive
from worker.ahead import Ahead
from worker.aheadcache import ahead_dir

CAMERAS = '{"cam1": "rtsp://h/one", "cam2": "rtsp://h/two"}'


def encode_args(seconds: int) -> list[str]:
    """ffmpeg: `seconds` of a 640x480 test picture through libx264, thrown away."""
    source = f"testsrc2=size=640x480:rate=30:duration={seconds}"
    codec = ["-c:v", "libx264", "-preset", "medium"]
    return [*base_args(), "-f", "lavfi", "-i", source, *codec, "-f", "null", "-"]


def test_the_cpu_of_the_child_is_read_from_its_rusage_and_grows_with_its_work() -> None:
    short, long = budget.cpu_seconds(encode_args(1)), budget.cpu_seconds(encode_args(4))
    assert 0 < short < long
    assert long > 2 * short
    with pytest.raises(FFmpegError, match="the measurement failed"):
        budget.cpu_seconds([*base_args(), "-i", "/nonexistent.ts", "-f", "null", "-"])


def fake_cgroups(root: Path, lines: str) -> tuple[Path, Path]:
    proc, fs = root / "proc", root / "fs"
    proc.mkdir(parents=True)
    (proc / "cgroup").write_text(lines)
    return proc, fs


def quota(d: Path, quota_us: int, period_us: int = 100_000) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "cpu.cfs_quota_us").write_text(f"{quota_us}\n")
    (d / "cpu.cfs_period_us").write_text(f"{period_us}\n")


def test_the_tightest_cgroup_v1_quota_of_the_process_and_its_parents_is_its_cpu(tmp_path: Path) -> None:
    proc, fs = fake_cgroups(tmp_path, "3:cpuset:/\n2:cpu,cpuacct:/box/pi4\n0::/\n")
    quota(fs / "cpu,cpuacct", -1)
    quota(fs / "cpu,cpuacct" / "box", 150_000)
    quota(fs / "cpu,cpuacct" / "box" / "pi4", 98_000)
    assert budget.cgroup_quota(proc, fs) == pytest.approx(0.98)
    quota(fs / "cpu,cpuacct" / "box", 50_000)
    assert budget.cgroup_quota(proc, fs) == pytest.approx(0.5)


def test_a_cgroup_v2_quota_and_no_quota_at_all(tmp_path: Path) -> None:
    proc, fs = fake_cgroups(tmp_path / "v2", "0::/box\n")
    (fs / "box").mkdir(parents=True)
    (fs / "box" / "cpu.max").write_text("220000 100000\n")
    assert budget.cgroup_quota(proc, fs) == pytest.approx(2.2)
    (fs / "box" / "cpu.max").write_text("max 100000\n")
    assert budget.cgroup_quota(proc, fs) is None
    proc, fs = fake_cgroups(tmp_path / "v1", "2:cpu:/\n")
    quota(fs / "cpu", -1)
    assert budget.cgroup_quota(proc, fs) is None
    assert 0 < budget.box_cpus() <= len(os.sched_getaffinity(0))


@pytest.fixture
def two_cameras(make_settings: Callable[..., Settings], tmp_path: Path) -> Callable[..., Settings]:
    logo = make_logo(tmp_path / "logo.png", size="60x30")

    def make(**kw: object) -> Settings:
        base = {"cameras": CAMERAS, "seg_time": 1, "pre_seconds": 10, "post_seconds": 2, "wm_logo": logo}
        return make_settings(**{**base, **kw})

    return make


def record(s: Settings, conn: redis.Redis, seconds: int = 6) -> None:
    for cam in ("cam1", "cam2"):
        make_segments(s, conn, cam, time.time() - seconds, seconds)


def test_each_cameras_stream_is_measured_decided_and_kept_in_redis_once(
    two_cameras: Callable[..., Settings], redis_conn: redis.Redis
) -> None:
    s = two_cameras()
    keeper = budget.Keeper(s, redis_conn, cpus=0.98)
    assert keeper.refresh() is None  # no segments yet: nothing to measure
    assert redis_conn.get(keys.budget(s.device_id)) is None
    record(s, redis_conn)
    data = keeper.refresh()
    assert data is not None
    assert budget.read(redis_conn, s.device_id) == json.loads(json.dumps(data))
    assert data["streams"] == {"cam1": "320x240@15/1", "cam2": "320x240@15/1"}
    # 320x240 is no taller than 720 lines and there is no hardware encoder here: one option each.
    assert {cam: sorted(c) for cam, c in data["costs"].items()} == {
        "cam1": ["software/source"],
        "cam2": ["software/source"],
    }
    assert all(0 < c["software/source"] < 2 for c in data["costs"].values())
    assert data["hardware"].startswith("no /dev/video11")
    decision = data["decision"]
    assert decision["box"]["cpus"] == 0.98
    assert set(decision["cameras"]) == {"cam1", "cam2"}
    assert budget.choice_for(redis_conn, s.device_id, "cam2") == decision["cameras"]["cam2"]
    # A second look with nothing changed decides again from the cached costs.
    again = budget.Keeper(s, redis_conn, cpus=0.5).refresh()
    assert again is not None
    assert again["measured_at"] == data["measured_at"] and again["costs"] == data["costs"]
    assert again["decision"]["box"]["cpus"] == 0.5


def test_another_logo_is_measured_again(
    two_cameras: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    s = two_cameras()
    record(s, redis_conn)
    first = budget.Keeper(s, redis_conn, cpus=2).refresh()
    other = two_cameras(wm_logo=make_logo(tmp_path / "other.png", size="120x60", color="blue"))
    second = budget.Keeper(other, redis_conn, cpus=2).refresh()
    assert first is not None and second is not None
    assert second["key"] != first["key"] and second["measured_at"] != first["measured_at"]


def test_a_forced_path_is_what_is_published(
    two_cameras: Callable[..., Settings], redis_conn: redis.Redis
) -> None:
    s = two_cameras(render_path="single")
    record(s, redis_conn)
    data = budget.Keeper(s, redis_conn, cpus=4).refresh()
    assert data is not None
    assert {c["path"] for c in data["decision"]["cameras"].values()} == {"single"}
    assert budget.allowed_paths(two_cameras(wm_ahead=False)) == (
        budget.RenderPath.PROGRESSIVE,
        budget.RenderPath.SINGLE,
    )
    assert budget.allowed_paths(two_cameras(wm_progressive=False)) == (budget.RenderPath.SINGLE,)


def test_the_ahead_encoder_encodes_only_the_cameras_the_budget_gives_it(
    two_cameras: Callable[..., Settings], redis_conn: redis.Redis
) -> None:
    forced = two_cameras(render_path="progressive", pre_seconds=30)
    record(forced, redis_conn, seconds=30)
    encoder = Ahead(forced, redis_conn)
    encoder.turn()  # before its first decision it encodes nothing (it measures an idle box), then decides
    assert not ahead_dir(forced, "cam1").exists() and not ahead_dir(forced, "cam2").exists()
    assert encoder.budget.path_of("cam1") is budget.RenderPath.PROGRESSIVE
    encoder.turn()
    assert not ahead_dir(forced, "cam1").exists() and not ahead_dir(forced, "cam2").exists()
    # The ahead path (forced: with CPU to spare and a 12 s window, the box would find the progressive
    # render as quick and cheaper): both cameras are watermarked ahead.
    free = two_cameras(render_path="ahead", pre_seconds=30)
    encoder = Ahead(free, redis_conn)
    encoder.turn()
    assert {encoder.budget.path_of(c) for c in ("cam1", "cam2")} == {budget.RenderPath.AHEAD}
    encoder.turn()
    for cam in ("cam1", "cam2"):
        assert list(ahead_dir(free, cam).rglob("*.json")), cam
    # A decision that takes a camera's path away removes its cache.
    data = budget.read(redis_conn, free.device_id)
    assert data is not None
    data["decision"]["cameras"]["cam2"]["path"] = "single"
    encoder.budget.published = data
    encoder.turn()
    assert list(ahead_dir(free, "cam1").rglob("*.json")) and not ahead_dir(free, "cam2").exists()


def test_status_and_the_dashboard_show_the_decision_the_box_published(
    two_cameras: Callable[..., Settings], redis_conn: redis.Redis
) -> None:
    s = two_cameras()
    text = run_gravanois(s, "status").stdout
    assert "render budget: not measured yet" in text
    record(s, redis_conn)
    data = budget.Keeper(s, redis_conn, cpus=0.98).refresh()
    assert data is not None
    shown = json.loads(run_gravanois(s, "status", "--json").stdout)["budget"]
    assert shown["cameras"] == data["decision"]["cameras"]
    assert shown["cpus"] == 0.98 and shown["costs"] == data["costs"]
    text = run_gravanois(s, "status").stdout
    assert "render budget: 0.98 CPU, 25% kept in reserve" in text
    for cam, choice in data["decision"]["cameras"].items():
        row = next(line for line in text.splitlines() if line.startswith(cam + " ") and "@15/1" in line)
        assert row.split()[2:5] == [choice["path"], choice["encoder"], choice["size"]], row
        assert f"~{choice['wait']:.1f} s" in row
    fleet, _healthy = report.state(s, "hash", time.time())
    assert fleet["render"]["cameras"] == data["decision"]["cameras"] and fleet["render"]["cpus"] == 0.98
    for lang, title in (("en", "Render budget"), ("pt-BR", "Orçamento de CPU dos vídeos")):
        request = Request(
            {"type": "http", "method": "GET", "path": "/admin", "headers": [], "query_string": b""}
        )
        request.scope["query_string"] = f"lang={lang}".encode()
        panel = Site(s, redis_conn).page(
            request, "panel.html", snap=snapshot(s, redis_conn), csrf="x", stamp=0
        )
        html = bytes(panel.body).decode()
        assert title in html and "<td>0.98</td>" in html and "<td>25%</td>" in html, lang
        for cam, choice in data["decision"]["cameras"].items():
            assert f"<td>{cam}</td><td>320x240@15/1</td><td>{choice['path']}</td>" in html


def test_the_ahead_encoder_encodes_at_the_size_the_budget_chose(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    s = make_settings(pre_seconds=30, post_seconds=2, seg_time=1, wm_logo=make_logo(tmp_path / "l.png"))
    rows = segment_stream(s.camera_buffer_dir("cam1"), 10, "1280x960", 10)
    end = time.time()
    offset = end - rows[-1][2]
    SegmentIndex(redis_conn, s.device_id, "cam1").add(
        *(Segment(offset + a, offset + b, n, "r1") for n, a, b in rows)
    )
    encoder = Ahead(s, redis_conn)
    # The decision as the budget would publish it for a box that can afford 720p only.
    choice = {
        "path": "ahead",
        "encoder": "software",
        "size": "720p",
        "cost": 0.3,
        "continuous": 0.3,
        "wait": 2,
    }
    encoder.budget.published = {"decision": {"cameras": {"cam1": choice}}}
    encoder.budget.checked = time.monotonic()  # no measurement in this turn
    encoder.turn()
    pieces = list(ahead_dir(s, "cam1").rglob("*.ts"))
    assert pieces
    assert {(probe(p).width, probe(p).height) for p in pieces} == {(960, 720)}
    # A build of this camera encodes with the same recipe: it takes the cached batch and adds its own.
    segs = SegmentIndex(redis_conn, s.device_id, "cam1").all()
    build = progressive.Encoder(s, "h1", "cam1", segs[-1].end, option=budget.option_of(choice))
    try:
        build.advance(segs)
        assert not build.broken, build.broken
        assert {p["from"] for p in build.pieces} == {"ahead", "build"}
        assert {probe(build.dir / p["file"]).height for p in build.pieces} == {720}
    finally:
        build.close()


def test_batches_that_cost_more_than_measured_correct_the_costs_the_decision_uses(
    two_cameras: Callable[..., Settings], redis_conn: redis.Redis
) -> None:
    s = two_cameras()
    record(s, redis_conn)
    keeper = budget.Keeper(s, redis_conn, cpus=2.0)
    first = keeper.refresh()
    assert first is not None and first["costs"] == first["measured"] and first["correction"] == {}
    assert first["decision"]["held_from"] == {}  # a first decision starts from nothing in force
    measured = first["measured"]
    key = "software/source"
    for _ in range(40):  # a busy box: each batch costs twice the measurement
        keeper.observe("cam1", 2 * measured["cam1"][key])
    assert keeper.correction["cam1"] == pytest.approx(2.0, rel=0.01)
    for _ in range(40):
        keeper.observe("cam1", 10 * measured["cam1"][key])
    assert keeper.correction["cam1"] == budget.CORRECTION_BOUNDS[1]  # bounded
    keeper.observe("cam2", 0.5 * measured["cam2"][key])
    assert keeper.correction["cam2"] == 1.0  # a measurement is never trusted less
    again = keeper.refresh()
    assert again is not None and again["measured"] == measured  # the measurement is kept, not made again
    assert again["costs"]["cam1"] == {k: round(v * 3.0, 4) for k, v in measured["cam1"].items()}
    assert again["costs"]["cam2"] == measured["cam2"]
    assert again["decision"]["cameras"]["cam1"]["cost"] == again["costs"]["cam1"][key]
    # Made again from the first decision's options, which it says (so status's figures re-derive it).
    assert again["decision"]["held_from"] == labels(first)
    restarted = budget.Keeper(s, redis_conn, cpus=2.0).refresh()  # a restart starts from what it finds
    assert restarted is not None and restarted["decision"]["held_from"] == labels(again)


def labels(published: dict) -> dict[str, str]:
    """A published budget's options, camera → `Option.label`."""
    return {
        cam: "/".join((c["path"], c["encoder"], c["size"]))
        for cam, c in published["decision"]["cameras"].items()
    }
