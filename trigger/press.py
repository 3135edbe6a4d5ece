"""A press → (camera check) → Redis: pin and build job; the journal only when Redis fails.

The one path every input (CLI, ENTER, GPIO, serial) takes. The press time is taken at the button by the
caller. Redis is tried first: the camera must be recording (else the press is refused at once and the
highlight recorded as failed), then the cooldown, the pin and the build job (deterministic id, so a
second hand-over is a no-op), enqueued at once: the build waits for its post-roll itself, so no
scheduler stands between a press and its clip. Only when Redis does not answer is the press written to
the journal (an atomic file on the data disk), which `replay` hands over later, oldest first and with
the original times. Redis comes first because the data disk is the disk that fills up: a full disk
must cost nothing while Redis answers (see docs/trigger.md).
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

import redis
from rq.job import JobStatus

from common import hours, journal, keys, sidecar
from common.counters import incr
from common.events import EventType, emit, source_of
from common.highlights import note_highlight
from common.journal import PressRecord
from common.keys import job_id
from common.log import event, get_logger
from common.pipeline import HighlightState, Stage, earlier_job, enqueue
from common.segments import SegmentIndex
from common.settings import Settings, SettingsError
from common.timeutil import iso, now
from common.verdict import verdict

log = get_logger(__name__)

# Pins outlive t+post by this much: the build's wait, its retries, a worker restart.
PIN_MARGIN_SECONDS = 3600.0
# Pressing again never runs a press's build job again, whatever became of it (a failed one is retried
# with `gravanois failed requeue`): to common.pipeline's idempotent enqueue, no ended status is a rerun.
PRESS_RERUN: frozenset[JobStatus] = frozenset()
ALL = "all"


class Result(StrEnum):
    """What became of one press, as the presser is told."""

    SCHEDULED = HighlightState.SCHEDULED.value  # accepted: the build job is queued
    JOURNALLED = "journalled"  # Redis is down: kept on disk, enqueued when it is back
    COOLDOWN = "cooldown"  # within the camera's cooldown after another press
    CLOSED = "closed"  # outside opening hours
    DUPLICATE = "duplicate"  # this very press is already queued
    REFUSED = "refused"  # the camera is not recording: answered at once, the highlight recorded as failed
    NOT_SAVED = "not-saved"  # Redis down and the journal unwritable (full disk): only the caller holds it


SCHEDULED, JOURNALLED, COOLDOWN, CLOSED, DUPLICATE, REFUSED, NOT_SAVED = Result


@dataclass(frozen=True)
class Outcome:
    """What became of one press."""

    press: PressRecord
    state: Result
    job_id: str
    clip: Path
    detail: str = ""

    def line(self) -> str:
        """One line for a terminal."""
        return (
            f"{self.state} camera={self.press.camera} at={iso(self.press.at)} "
            f"job={self.job_id} clip={self.clip}" + (f" ({self.detail})" if self.detail else "")
        )


def cameras_for(settings: Settings, target: str | list[str]) -> list[str]:
    """Camera ids a button or `--camera` value means: an id, `all`, or a list of ids."""
    names = [target] if isinstance(target, str) else list(target)
    out: list[str] = []
    for name in names:
        ids = [c.id for c in settings.cameras] if name == ALL else [settings.camera(name).id]
        out += [i for i in ids if i not in out]
    return out


def button_map(settings: Settings) -> dict[str, list[str]]:
    """GN_BUTTONS as {button: [camera ids]}; a SettingsError names what to fix."""
    if not settings.buttons.strip():
        return {}
    try:
        raw = json.loads(settings.buttons)
    except json.JSONDecodeError:
        raise SettingsError(
            'GN_BUTTONS is not valid JSON: write it like {"17": "all", "BTN_2": "cam2"}'
        ) from None
    if not isinstance(raw, dict):
        raise SettingsError('GN_BUTTONS must be a JSON object like {"17": "all", "BTN_2": "cam2"}')
    out = {}
    for button, target in raw.items():
        if not isinstance(target, str | list) or not all(isinstance(t, str) for t in target):
            raise SettingsError(f'GN_BUTTONS[{button!r}] must be a camera id, "all" or a list of ids')
        try:
            out[str(button)] = cameras_for(settings, target)
        except SettingsError as exc:
            raise SettingsError(f"GN_BUTTONS[{button!r}]: {exc}") from None
    return out


def is_open(settings: Settings, at: float) -> bool:
    """True if `at` falls inside GN_OPEN_HOURS in the venue's time zone (always, when unset)."""
    return hours.of(settings).is_open(at)


def make_presses(settings: Settings, cameras: list[str], at: float, source: str) -> list[PressRecord]:
    """One PressRecord per camera, all with the same time (taken at the button) and the configured window."""
    return [
        PressRecord(camera=c, at=at, pre=settings.pre_seconds, post=settings.post_seconds, source=source)
        for c in cameras
    ]


def outcome(settings: Settings, press: PressRecord, state: Result, detail: str = "") -> Outcome:
    """An Outcome with the job id and clip path the press will produce."""
    return Outcome(
        press,
        state,
        job_id(settings.device_id, press.press_id, Stage.BUILD),
        settings.clips_dir / sidecar.clip_name(press),
        detail,
    )


def submit(settings: Settings, conn: redis.Redis, press: PressRecord, check_camera: bool = True) -> Outcome:
    """Handle one press: opening hours, camera, cooldown, pin, scheduled build job; journal if Redis fails.

    `check_camera=False` for a press that waited (Redis was down): the camera's state now says nothing
    about the press time, and the build job judges the window's segments itself.
    """
    if not is_open(settings, press.at):
        detail = f"outside opening hours {settings.open_hours} ({settings.timezone})"
        event(log, "press_refused", level=30, camera=press.camera, at=iso(press.at), reason=detail)
        with contextlib.suppress(redis.RedisError):
            incr(conn, settings, keys.Counter.PRESSES_IGNORED)
            rejected(settings, conn, press, detail)
        return outcome(settings, press, CLOSED, detail)
    try:
        problem = camera_problem(settings, conn, press) if check_camera else None
        if problem is not None:
            return refuse(settings, conn, press, problem)
        return hand_over(settings, conn, press)
    except redis.RedisError as exc:
        return keep(settings, press, f"Redis unavailable: {type(exc).__name__}")


def rejected(settings: Settings, conn: redis.Redis, press: PressRecord, reason: str) -> None:
    """Tell the fleet a press was not taken (closed hours, cooldown). Raises RedisError."""
    emit(
        conn,
        settings,
        EventType.TRIGGER_REJECTED,
        camera=press.camera,
        trigger_id=press.press_id,
        trigger_source=source_of(press.source),
        reason=reason,
    )


def keep(settings: Settings, press: PressRecord, reason: str) -> Outcome:
    """Journal a press Redis could not take; NOT_SAVED (never an exception) if the disk refuses too."""
    try:
        journal.write(settings.journal_dir, press)
    except OSError as exc:
        detail = (
            f"not saved: Redis is not answering and the journal in {settings.journal_dir} cannot be "
            f"written ({exc.strerror or exc}): free space on the data disk or start Redis"
        )
        event(log, "press_not_saved", level=40, camera=press.camera, at=iso(press.at), reason=detail)
        return outcome(settings, press, NOT_SAVED, detail)
    event(log, "press_journalled", level=30, camera=press.camera, at=iso(press.at), reason=reason)
    return outcome(settings, press, JOURNALLED, "Redis is down; the listener enqueues it when Redis is back")


def replay(settings: Settings, conn: redis.Redis) -> list[Outcome]:
    """Hand journalled presses to Redis, oldest first, with their original times; stops at a Redis error."""
    results = []
    for press in journal.pending(settings.journal_dir):
        try:
            result = hand_over(settings, conn, press)
        except redis.RedisError:
            break
        try:
            journal.remove(settings.journal_dir, press)
        except OSError as exc:  # Redis holds the job: a later replay finds it (duplicate) and retries
            event(log, "journal_remove_failed", level=30, camera=press.camera, error=str(exc))
        event(log, "press_replayed", camera=press.camera, at=iso(press.at), state=result.state)
        results.append(result)
    return results


def camera_problem(
    settings: Settings, conn: redis.Redis, press: PressRecord, at_now: float | None = None
) -> str | None:
    """Why the press's camera cannot give it a highlight (one sentence), or None. Raises RedisError.

    A press taken now needs a camera that is recording by its recorder's published verdict
    (common.verdict). A press from the past (`--at`: older than that recorder's limit) needs a segment in
    its window, or a recording camera for the part of the window still to come.
    """
    t = now() if at_now is None else at_now
    judged = verdict(conn, settings, press.camera, t)
    index = SegmentIndex(conn, settings.device_id, press.camera)
    a, b = press.window
    live = press.at >= t - judged.stall_limit
    if live and judged.recording:
        return None
    if not live and (index.covering(a, b) or (b > t and judged.recording)):
        return None
    # The time to name is the end of what the camera last recorded before the press, not its newest
    # segment: for a press given later with --at, the newest one is after the window.
    before = index.last_before(press.at)
    last = (
        f"its last segment before the press ended {iso(before.end)}"
        if before is not None
        else "it has no segment at all"
    )
    if not live:
        return f"camera {press.camera} recorded nothing in the window {iso(a)} to {iso(b)}; {last}"
    return f"{judged.why}; {last}"


def refuse(settings: Settings, conn: redis.Redis, press: PressRecord, reason: str) -> Outcome:
    """Answer a press whose camera is not recording: log it and record the highlight as failed now."""
    event(log, "press_refused", level=40, camera=press.camera, at=iso(press.at), reason=reason)
    note_highlight(
        conn,
        settings,
        press.press_id,
        press.at,
        EventType.TRIGGER_REJECTED,
        reason,
        state=HighlightState.FAILED,
        camera=press.camera,
        source=source_of(press.source),
        error=reason,
    )
    return outcome(settings, press, REFUSED, reason)


def cooldown_ok(settings: Settings, conn: redis.Redis, press: PressRecord) -> bool:
    """True if no accepted press of this camera lies within GN_COOLDOWN_SECONDS before this one.

    The key holds the last accepted press time; SET NX makes two simultaneous presses race safely.
    A replayed press is compared by its original time, not by when Redis came back.
    """
    if settings.cooldown_seconds <= 0:
        return True
    key = keys.cooldown(settings.device_id, press.camera)
    left = settings.cooldown_seconds - (now() - press.at)
    if conn.set(key, repr(press.at), nx=True, ex=max(1, math.ceil(left))):
        return True
    last = conn.get(key)
    try:
        last_at = float(last) if last is not None else None
    except ValueError:
        last_at = None
    if last_at is not None and (press.at == last_at or abs(press.at - last_at) >= settings.cooldown_seconds):
        # The same press again (a hand-over that Redis cut short after the cooldown was set, replayed
        # from the journal), or an old key from an earlier, replayed press: outside its cooldown.
        conn.set(key, repr(max(press.at, last_at)), ex=max(1, math.ceil(left)))
        return True
    return False


def hand_over(settings: Settings, conn: redis.Redis, press: PressRecord) -> Outcome:
    """Cooldown, pin and scheduled build job in Redis (RedisError propagates: the journal keeps it)."""
    build_id = job_id(settings.device_id, press.press_id, Stage.BUILD)
    # Asked before the cooldown and the pin, which a press already there must not touch again.
    if earlier_job(conn, build_id, PRESS_RERUN)[1]:
        return outcome(settings, press, DUPLICATE, "this press is already queued")
    if not cooldown_ok(settings, conn, press):
        detail = f"within the {settings.cooldown_seconds:g} s cooldown of camera {press.camera}"
        event(log, "press_ignored", camera=press.camera, at=iso(press.at), reason=detail)
        incr(conn, settings, keys.Counter.PRESSES_IGNORED)
        rejected(settings, conn, press, detail)
        return outcome(settings, press, COOLDOWN, detail)
    a, b = press.window
    SegmentIndex(conn, settings.device_id, press.camera).pin(
        press.press_id, a, b, max(0.0, b - now()) + PIN_MARGIN_SECONDS
    )
    _, created = enqueue(
        settings, conn, Stage.BUILD, asdict(press), press_id=press.press_id, at=press.at, rerun=PRESS_RERUN
    )
    if not created:
        return outcome(settings, press, DUPLICATE, "this press is already queued")
    incr(conn, settings, keys.Counter.PRESSES)
    note_highlight(
        conn,
        settings,
        press.press_id,
        press.at,
        EventType.TRIGGER_ACCEPTED,
        state=HighlightState.SCHEDULED,
        camera=press.camera,
        source=source_of(press.source),
        job=build_id,
    )
    event(
        log,
        "press_scheduled",
        camera=press.camera,
        at=iso(press.at),
        job=build_id,
        due=iso(b),
        source=press.source,
    )
    return outcome(settings, press, SCHEDULED, f"due {iso(b)}")
