"""The ahead encoder (`gravanois ahead`): each camera's newest segments watermarked before any press.

A highlight's window is mostly recorded before its press. The build job watermarks it while the
post-roll records (worker.progressive), but 40 s of pre-roll is a lot to encode in a 10 s post-roll on
a Pi, and a 5-minute window cannot be encoded in it anywhere. This process keeps the last
`GN_PRE_SECONDS` of every camera watermarked already, in batches of about `BATCH_SECONDS` as the
segments close. A build links the batches inside its window and encodes only the window's first
seconds and its newest segments: the wait after the post-roll no longer grows with the window.

- It runs at a lower CPU priority (nice 10): the recorder, builds and renders come first. When it
  cannot keep up (a camera too big for the box), it drops batches too old to serve any press and says
  so, rather than fall further behind.
- Its cache (`<data>/ahead/<camera>/<recipe>/`) keeps the last pre + post + a minute; a new recipe
  (another logo, preset or camera size) starts a new folder and the old ones go. Off, it deletes it.
- It never exits on a Redis or ffmpeg error: it logs once, waits and goes on.
- One runs per device (supervisord's `ahead` program); a second would encode everything twice and
  break nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import shutil
import socket
import time
from collections.abc import Callable

import redis

from common import keys
from common.budget import RenderPath, Size, VideoEncoder
from common.ffmpeg import FFmpegError
from common.fsutil import TMP_MARK
from common.log import event, get_logger
from common.segments import Segment, SegmentIndex
from common.settings import Settings
from common.timeutil import now
from common.watermark import Watermark
from worker import budget
from worker.aheadcache import BATCH_SECONDS, FLUSH_TOLERANCE, AheadCache, ahead_dir, ahead_root, newest_end
from worker.outage import Outage
from worker.recipe import Recipe, applies
from worker.tsfiles import ts_problem

log = get_logger(__name__)


def never() -> bool:
    """The default stop condition: run until the process ends."""
    return False


# How often it looks for closed segments (one Redis read per camera): a batch waits at most this long.
POLL_SECONDS = 1.0
# How often it tells Redis it is alive (`gravanois status` shows it), and how long that lasts.
HEARTBEAT_SECONDS, HEARTBEAT_TTL = 5.0, 30
# How long a batch is kept after the newest pre-roll that could need it: a build may start late.
KEEP_EXTRA_SECONDS = 60.0
NICE = 10
REDIS_RETRY = 1.0


def off_reason(settings: Settings) -> str:
    """Why the ahead encoder does nothing on this box ('' when it runs)."""
    if not settings.wm_ahead:
        return "GN_WM_AHEAD=false"
    if not applies(settings):
        return "the progressive render does not apply (see GN_WM_PROGRESSIVE and the render settings)"
    return ""


class Ahead:
    """The ahead encoder of every camera of the box (see the module's docstring)."""

    def __init__(
        self, settings: Settings, conn: redis.Redis, should_stop: Callable[[], bool] = never
    ) -> None:
        self.settings, self.conn, self.should_stop = settings, conn, should_stop
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        wm = Watermark.from_settings(settings)
        self.cameras = [CameraAhead(settings, conn, cam.id, wm, should_stop) for cam in settings.cameras]
        self.outage = Outage("ahead")
        self.last_beat = 0.0
        self.budget = budget.Keeper(settings, conn)

    def run(self) -> None:
        """Encode batches until `should_stop()`; errors are logged, never the end of the loop."""
        with_cache = {cam.camera for cam in self.cameras}
        root = ahead_root(self.settings)
        if root.is_dir():
            for stale in (p for p in root.iterdir() if p.name not in with_cache):
                shutil.rmtree(stale, ignore_errors=True)  # a camera no longer configured
        remove_unfinished(self.settings)  # left by a crash or a power cut
        event(log, "ahead_start", cameras=sorted(with_cache), batch_seconds=BATCH_SECONDS)
        try:
            while not self.should_stop():
                self.outage.turn(self.turn, POLL_SECONDS, REDIS_RETRY)
        finally:
            self.forget()  # at any stop, SIGTERM's too: status need not wait for the heartbeat to lapse
        event(log, "ahead_stop")

    def turn(self) -> None:
        """One pass over the cameras the render budget gives this encoder (none before its first
        decision: what the box can afford is measured on an idle box), the heartbeat, then the budget
        (measured again when the cameras or the watermark change: a few seconds of encoding, after
        this turn's batches)."""
        for cam in self.cameras:
            if self.budget.path_of(cam.camera) is RenderPath.AHEAD:
                cam.use(self.budget.option_of(cam.camera))
                cam.tick()
                for cost in cam.take_observed():
                    self.budget.observe(cam.camera, cost)
            else:
                cam.idle()
        self.heartbeat()
        self.budget.tick()

    def heartbeat(self) -> None:
        """Every few seconds, tell `gravanois status` it runs, and how far each camera's cache reaches."""
        t = time.monotonic()
        if t - self.last_beat < HEARTBEAT_SECONDS:
            return
        self.last_beat = t
        state = {
            "name": self.name,
            "updated_at": now(),
            "cameras": {
                cam.camera: {"cached_until": cam.cached_until, "behind": cam.behind_since is not None}
                for cam in self.cameras
            },
        }
        self.conn.set(keys.ahead(self.settings.device_id), json.dumps(state), ex=HEARTBEAT_TTL)

    def forget(self) -> None:
        """Take the heartbeat away at a stop."""
        with contextlib.suppress(redis.RedisError):
            self.conn.delete(keys.ahead(self.settings.device_id))


def keeps_up(conn: redis.Redis, device: str, camera: str) -> bool:
    """True when the running ahead encoder batches `camera` and keeps up with it (its heartbeat): a
    build may then leave the newest segments to it (worker.progressive)."""
    raw = conn.get(keys.ahead(device))
    try:
        state = json.loads(raw) if raw is not None else {}
        cam = state["cameras"][camera]
        return cam["cached_until"] is not None and cam["behind"] is False
    except (ValueError, KeyError, TypeError):
        return False


class CameraAhead:
    """One camera: batches of its closed segments (one recording run each) into the cache."""

    def __init__(
        self, settings: Settings, conn: redis.Redis, camera: str, wm: Watermark,
        should_stop: Callable[[], bool] = never,
    ) -> None:  # fmt: skip
        self.settings, self.camera, self.wm, self.should_stop = settings, camera, wm, should_stop
        self.index = SegmentIndex(conn, settings.device_id, camera)
        self.buffer = settings.camera_buffer_dir(camera)
        self.pending: list[Segment] = []
        self.last: Segment | None = None  # the newest segment looked at
        self.tail: Segment | None = None  # the newest segment batched (None after a bad one)
        self.cache: AheadCache | None = None
        self.new_run = True  # the next batch starts a recording run: read its recipe again
        self.behind_since: float | None = None
        self.cached_until: float | None = None  # wall-clock end of the newest batch cached
        self.option = (VideoEncoder.SOFTWARE, Size.SOURCE)  # the budget's encoder and size for this camera
        self.observed: list[float] = []  # CPU-s per video second of the batches encoded since last asked

    def use(self, option: tuple[VideoEncoder, Size]) -> None:
        """The budget's encoder and size: a change starts a new recipe at the next batch."""
        if option != self.option:
            self.option, self.new_run = option, True

    def tick(self) -> None:
        """Take the segments closed since the last tick; encode each batch that is complete."""
        t = now()
        if self.last is None:
            fresh = self.index.covering(self.oldest_useful(t), t)
        else:
            fresh = self.index.after(self.last.start)
        for seg in sorted(fresh):
            if self.should_stop():
                return  # between two batches: a stop never waits for the rest of a backlog
            self.last = seg
            if ts_problem(self.buffer / seg.name):
                self.flush()  # a file a build cannot join ends the batch, and is left out
                self.tail = None
                continue
            if self.tail is None or not seg.continues(self.tail):
                self.flush()  # a new recording run: a batch never spans two
                self.new_run = True
            self.pending.append(seg)
            self.tail = seg
            if seg.end - self.pending[0].start >= BATCH_SECONDS - FLUSH_TOLERANCE:
                self.flush()
        self.prune(t)

    def take_observed(self) -> list[float]:
        """The costs of the batches encoded since the last call (for the render budget's correction)."""
        taken, self.observed = self.observed, []
        return taken

    def idle(self) -> None:
        """The budget gives this camera another path: nothing is encoded, its cache goes, and it starts
        again from its newest segments if the budget gives it back."""
        if self.cache is not None or self.last is not None:
            shutil.rmtree(ahead_dir(self.settings, self.camera), ignore_errors=True)
            event(log, "ahead_camera_off", camera=self.camera, reason="the render budget chose another path")
        self.pending, self.last, self.tail, self.cache = [], None, None, None
        self.new_run, self.behind_since, self.cached_until = True, None, None

    def oldest_useful(self, t: float) -> float:
        """The start of the oldest pre-roll a press made from now on can ask for."""
        return t - self.settings.pre_seconds

    def flush(self) -> None:
        """Encode the pending segments as one cached batch (unless too old to serve a press)."""
        batch, self.pending = self.pending, []
        if not batch:
            return
        if batch[-1].end < self.oldest_useful(now()):
            if self.behind_since is None:
                self.behind_since = now()
                event(
                    log, "ahead_behind", 30, camera=self.camera,
                    reason="encoding is slower than the camera records: older batches are dropped; "
                    "lower the camera's resolution or frame rate, or set GN_WM_AHEAD=false",
                )  # fmt: skip
            return
        if self.behind_since is not None:
            event(log, "ahead_caught_up", camera=self.camera, after_s=round(now() - self.behind_since, 1))
            self.behind_since = None
        try:
            cache = self.cache_for(batch[0])
            if not any(b.segments[0] == batch[0].name for b in cache.batches()):
                spent, started = children_cpu(), time.monotonic()
                cache.add(batch, self.buffer)
                seconds = batch[-1].end - batch[0].start
                self.observed.append((children_cpu() - spent) / max(0.1, seconds))
                # How far behind the camera the cache is once the batch is in (a build waits for that).
                event(
                    log, "ahead_batch", logging.DEBUG, camera=self.camera, video_s=round(seconds, 2),
                    encode_s=round(time.monotonic() - started, 2), lag_s=round(now() - batch[-1].end, 2),
                )  # fmt: skip
            self.cached_until = batch[-1].end
        except (FFmpegError, OSError) as exc:
            if self.should_stop():
                return  # its ffmpeg was killed by the stop
            event(log, "ahead_batch_failed", 30, camera=self.camera, segment=batch[0].name, error=str(exc))

    def cache_for(self, first: Segment) -> AheadCache:
        """The cache for the recipe of `first`'s recording run (read at each run's first batch)."""
        if self.cache is None or self.new_run:
            recipe = Recipe.of(self.settings, self.wm, self.buffer / first.name, *self.option)
            if self.cache is None or recipe.key != self.cache.recipe.key:
                # Another recipe's folder stays until its batches age out (`prune`): a build started
                # before the change (the budget gave the camera another size) still takes them.
                self.cache = AheadCache(self.settings, self.camera, recipe)
                self.cache.dir.mkdir(parents=True, exist_ok=True)
            self.new_run = False
        return self.cache

    def prune(self, t: float) -> None:
        """Drop batches no build can need any more (older than pre + post + a margin), and the folders
        of other recipes once all of theirs are."""
        if self.cache is None:
            return
        oldest = t - self.settings.pre_seconds - self.settings.post_seconds - KEEP_EXTRA_SECONDS
        for batch in self.cache.batches():
            if batch.end < oldest:
                self.cache.forget(batch)
        for other in self.cache.dir.parent.iterdir():
            if other != self.cache.dir and newest_end(other) < oldest:
                shutil.rmtree(other, ignore_errors=True)


def children_cpu() -> float:
    """CPU-seconds this process's ended children spent (an encode's cost is the difference around it)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def lower_priority() -> None:
    """Let the recorder, builds and renders have the CPU first (ffmpeg children inherit it)."""
    os.nice(NICE)


def remove_unfinished(settings: Settings) -> None:
    """Delete the temp files of batches whose encoding was cut short (a kill, a stop mid-batch)."""
    for path in ahead_root(settings).rglob(f"{TMP_MARK}*"):
        with contextlib.suppress(OSError):
            path.unlink()


def remove_cache(settings: Settings) -> None:
    """Delete every camera's cache (the ahead encoder is off: nothing will use or prune it)."""
    shutil.rmtree(ahead_root(settings), ignore_errors=True)
