"""The progressive render against the single pass, from the same press: the viewer must not tell them apart.

Segments are indexed as a recorder indexes them (each when its wall-clock end passes), so the build job
really encodes pieces while the post-roll "records"; real workers, real ffmpeg, real Redis. With the
ahead encoder (a real `gravanois ahead`), part of the pieces come from its cache.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from common import sidecar
from common.ffmpeg import probe, probe_json
from common.fsutil import TMP_MARK, sha256_file
from common.journal import PressRecord
from common.segments import Segment, SegmentIndex
from common.settings import Settings
from common.watermark import Watermark, logo_width
from harness.media import make_logo
from harness.procfs import all_procs
from tests.build_helpers import make_segments, run_build_worker
from tests.helpers import decode_errors, start_gravanois, wait_for
from tests.render_helpers import frame, region_diff
from trigger import press as press_mod
from worker import aheadcache, engines, pieces

W, H, FPS = 320, 240, 15


def index_live(conn: redis.Redis, s: Settings, segments: list[Segment]) -> threading.Thread:
    """Index each segment when its end has passed, like the recorder (a thread; ends with the last)."""

    def run() -> None:
        index = SegmentIndex(conn, s.device_id, "cam1")
        for seg in segments:
            time.sleep(max(0.0, seg.end - time.time()))
            index.add(seg)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def stream_durations(path: Path) -> dict[str, float]:
    """Duration of each stream (video, audio) from its packets."""
    out = {}
    for st in probe_json(path)["streams"]:
        out[st["codec_type"]] = float(st["duration"])
    return out


def frame_count(path: Path) -> int:
    """Video frames really decoded."""
    args = ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames"]
    args += ["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", str(path)]
    return int(subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip())


def live_recording(
    make_settings: Callable[..., Settings],
    conn: redis.Redis,
    tmp_path: Path,
    pre: float,
    post: float,
    before: float,
    **more: object,
) -> tuple[Settings, list[Segment], threading.Thread]:
    """Settings (`more` of them too) with a red logo, and 16 + `before` s of a stream recorded from
    `before` s ago on, each segment indexed when its end passes (the thread doing it)."""
    s = make_settings(
        pre_seconds=pre, post_seconds=post, seg_time=1, buffer_seconds=60, cooldown_seconds=0,
        wm_logo=make_logo(tmp_path / "logo.png", size="120x60", color="red"), wm_opacity=1.0, **more,
    )  # fmt: skip
    segments = make_segments(s, conn, "cam1", time.time() - before, int(before) + 16, index=False)
    return s, segments, index_live(conn, s, segments)


def built_press(s: Settings, press: PressRecord, tmp_path: Path) -> tuple[dict, dict, Path]:
    """A built press's sidecar, its pieces' manifest, and a copy of its raw clip."""
    clip = s.clips_dir / sidecar.clip_name(press)
    data = sidecar.load(sidecar.path_for(clip))
    manifest = json.loads((pieces.pieces_dir(s, clip.stem) / pieces.MANIFEST).read_text())
    raw = tmp_path / "raw.mp4"
    shutil.copyfile(clip, raw)
    return data, manifest, raw


@pytest.fixture
def live_press(make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path):
    """A press in the middle of a live recording: built progressively; the raw clip kept aside."""
    s, segments, feeder = live_recording(make_settings, redis_conn, tmp_path, pre=6, post=5, before=8)
    press = PressRecord("cam1", time.time(), 6, 5)
    assert press_mod.hand_over(s, redis_conn, press).state == press_mod.SCHEDULED
    built = run_build_worker(s, "build", timeout=120)
    assert built.returncode == 0, built.stderr[-2000:]
    feeder.join(20)
    data, manifest, raw = built_press(s, press, tmp_path)
    return s, press, data, manifest, raw, segments


def test_progressive_and_single_pass_give_the_same_highlight(live_press, tmp_path: Path) -> None:
    s, _press, data, manifest, raw, segments = live_press
    # Pieces were made while the post-roll was still recording: more than one, joined meanwhile.
    assert len(manifest["pieces"]) >= 2, manifest
    # The raw clip and the pieces' MP4 were both joined as their files closed (worker.streamjoin).
    assert data["join_streamed"] is True and data["progressive"]["joined"] == pieces.JOINED
    joined = sha256_file(pieces.pieces_dir(s, Path(data["file_name"]).stem) / pieces.JOINED)
    done = render_like_single_pass(s, data, manifest, raw, segments, tmp_path)
    assert done["progressive"]["ahead_pieces"] == 0  # no ahead encoder ran
    assert done["wm_sha256"] == joined  # the render took the build's join as it was


def test_without_the_build_s_join_the_render_joins_the_pieces(live_press, tmp_path: Path) -> None:
    s, _press, data, manifest, raw, segments = live_press
    (pieces.pieces_dir(s, Path(data["file_name"]).stem) / pieces.JOINED).unlink()
    render_like_single_pass(s, data, manifest, raw, segments, tmp_path)


def render_like_single_pass(
    s: Settings, data: dict, manifest: dict, raw: Path, segments: list[Segment], tmp_path: Path
) -> dict:
    """Render the built press (progressive path) and check it against a single pass of its raw clip:
    the same frames, duration, audio, and the logo on both sides of every join. The final sidecar."""
    rendered = run_build_worker(s, "render", timeout=180)
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    out_side = s.output_dir / sidecar.path_for(Path(data["file_name"])).name
    done = sidecar.load(out_side)
    assert done["render_path"] == "progressive" and done["status"] == "watermarked"
    assert not pieces.pieces_dir(s, Path(data["file_name"]).stem).exists()  # cleaned up
    prog = Path(done["wm_path"])

    single = tmp_path / "single.mp4"
    engines.FFmpegEngine().render(
        engines.RenderJob(
            src=raw, dst=single, wm=Watermark.from_settings(s), width=W, height=H,
            duration=probe(raw).duration_sec, fps=FPS, crf=s.wm_crf, preset=s.wm_preset,
        )
    )  # fmt: skip

    # Same frames count and duration (within one frame), audio and video agreeing, a clean decode.
    assert frame_count(prog) == frame_count(single) == frame_count(raw)
    assert abs(probe(prog).duration_sec - probe(single).duration_sec) <= 1 / FPS + 0.001
    for path in (prog, single):
        streams = stream_durations(path)
        assert abs(streams["video"] - streams["audio"]) <= 0.05, (path.name, streams)
    assert decode_errors(prog) == ""
    assert probe(prog).codec == "h264"

    # The logo in its corner in the frames on both sides of every join, and nowhere else.
    by_name = {seg.name: seg for seg in segments}
    clip_start = by_name[manifest["pieces"][0]["segments"][0]].start
    joins = [by_name[p["segments"][0]].start - clip_start for p in manifest["pieces"][1:]]
    lw = logo_width(W, s.wm_rel_width)
    lh = lw // 2
    corner = (W - s.wm_margin - lw, H - s.wm_margin - lh, W - s.wm_margin, H - s.wm_margin)
    for join in joins:
        # The last frame before the join and the first after it (a seek lands on the next frame).
        for at in (join - 1.5 / FPS, join - 0.5 / FPS):
            p, r, one = frame(prog, at, W, H), frame(raw, at, W, H), frame(single, at, W, H)
            assert region_diff(p, r, W, *corner) > 40, f"no logo at {at:.3f} s (join at {join:.3f} s)"
            assert region_diff(p, one, W, *corner) < 8, f"logo differs from the single pass at {at:.3f} s"
            assert region_diff(p, r, W, 0, 0, W, H // 2) < 8, f"the picture changed at {at:.3f} s"
            # The same moment: the progressive frame is the single-pass frame.
            assert region_diff(p, one, W, 0, 0, W, H) < 4, f"a different frame at {at:.3f} s"
    return done


def test_pieces_from_the_ahead_encoder_join_like_the_single_pass(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    # The ahead path forced: for a 16 s window the render budget would find the progressive render as quick.
    s, segments, feeder = live_recording(
        make_settings, redis_conn, tmp_path, pre=12, post=4, before=13, render_path="ahead"
    )
    ahead = start_gravanois(s, "ahead")
    try:
        cache = aheadcache.ahead_dir(s, "cam1")
        record = wait_for("a batch in the ahead cache", lambda: sorted(cache.glob("*/*.json")), timeout=60)[0]
        batch = json.loads(record.read_text())["segments"]
        assert len(batch) >= 2, batch
        # The window starts half a segment before the cached batch: the build encodes that part itself,
        # so the clip joins the build's pieces and the cache's.
        by_name = {seg.name: seg for seg in segments}
        at = time.time()
        press = PressRecord("cam1", at, round(at - by_name[batch[0]].start + 0.5, 3), 4)
        assert press_mod.hand_over(s, redis_conn, press).state == press_mod.SCHEDULED
        built = run_build_worker(s, "build", timeout=120)
        assert built.returncode == 0, built.stderr[-2000:]
    finally:
        ahead.terminate()
        assert ahead.wait(10) == 0
    feeder.join(30)
    data, manifest, raw = built_press(s, press, tmp_path)
    sources = [p["from"] for p in manifest["pieces"]]
    assert sources[0] == "build" and "ahead" in sources, manifest
    assert next(p["segments"] for p in manifest["pieces"] if p["from"] == "ahead") == batch
    assert data["progressive"]["ahead_pieces"] == sources.count("ahead")
    render_like_single_pass(s, data, manifest, raw, segments, tmp_path)


def test_without_pieces_the_render_takes_the_single_pass(live_press) -> None:
    s, _press, data, _manifest, _raw, _segments = live_press
    shutil.rmtree(pieces.pieces_dir(s, Path(data["file_name"]).stem))  # e.g. a reboot emptied them
    rendered = run_build_worker(s, "render", timeout=180)
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    done = sidecar.load(s.output_dir / sidecar.path_for(Path(data["file_name"])).name)
    assert done["render_path"] == "single-pass" and done["status"] == "watermarked"
    assert decode_errors(Path(done["wm_path"])) == ""


def stream_joins(worker: int) -> dict[int, int]:
    """The ffmpeg processes that join from a pipe (worker.streamjoin) for this worker's work horse:
    pid → the horse's pid. Other tests run their own workers at the same time; only this one's count."""
    procs = all_procs()
    out = {}
    for pid, st in procs.items():
        horse = procs.get(st.ppid)
        if st.name == "ffmpeg" and horse is not None and horse.ppid == worker:
            with contextlib.suppress(OSError):
                if b"pipe:0" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                    out[pid] = st.ppid
    return out


def running() -> set[int]:
    """The pids of processes alive now (a zombie has ended)."""
    return {pid for pid, st in all_procs().items() if st.state != "Z"}


def test_a_build_killed_while_it_joins_leaves_no_ffmpeg_and_its_retry_finishes(
    make_settings: Callable[..., Settings], redis_conn: redis.Redis, tmp_path: Path
) -> None:
    s, _segments, feeder = live_recording(
        make_settings, redis_conn, tmp_path, pre=6, post=8, before=8, retry_intervals=(1,)
    )
    press = PressRecord("cam1", time.time(), 6, 8)
    assert press_mod.hand_over(s, redis_conn, press).state == press_mod.SCHEDULED
    worker = start_gravanois(s, "worker", "--queues", "build")
    try:
        # During the post-roll the build's joins read from their pipes; kill the process feeding them
        # (RQ's work horse) the hard way, as the kernel's OOM killer would.
        joins = wait_for("the build's joins", lambda: set(stream_joins(worker.pid)), timeout=60, every=0.05)
        clip = s.clips_dir / sidecar.clip_name(press)
        partial = f"{TMP_MARK}*-{clip.name}"
        wait_for("the raw clip's join to write", lambda: list(s.clips_dir.glob(partial)), timeout=30)
        horse = stream_joins(worker.pid)[min(joins)]
        os.kill(horse, signal.SIGKILL)
        wait_for("its ffmpeg to go with it", lambda: not joins & running(), timeout=10, every=0.05)
        wait_for("the retry to build the clip", sidecar.path_for(clip).is_file, timeout=120)
    finally:
        worker.terminate()
        worker.wait(30)
    feeder.join(30)
    assert decode_errors(clip) == "" and probe(clip).duration_sec > press.pre + press.post - 1
    # The killed attempt's unfinished clip went with the retry; nothing else is left beside the clip.
    expected = [clip.name, sidecar.path_for(clip).name, pieces.pieces_dir(s, clip.stem).name]
    assert sorted(x.name for x in s.clips_dir.iterdir()) == sorted(expected)
