"""Is a camera recording? Its recorder decides and publishes; everyone else reads the verdict here.

The recorder's watchdog is the one judge of a stall (recorder/watchdog.py): no closed segment for
`stall_limit` seconds. The recorder publishes in its health hash (keys.camera_health) its state, the end
of its newest segment, the limit its watchdog uses now and its current recording run. `verdict` applies
the one rule to that hash: a camera is recording when its recorder says so and its newest segment ended
within that recorder's own limit, so a recorder that died (its hash stops changing) is judged by the
number it published. A recorder stopping or starting while the box restarts its programs on purpose
(keys.restarting) counts as recording for `PLANNED_RESTART_GRACE` more.

`gravanois status` (and the web dashboard, which shows it), the press and the build's wait for the segment
closing its window read this; none of them computes a limit of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

import redis

from common import keys
from common.redisconn import text
from common.settings import Settings


class State(StrEnum):
    """What the recorder is doing (the `state` field of its health hash)."""

    STARTING = "starting"
    RECORDING = "recording"
    STALLED = "stalled"
    BACKOFF = "backoff"
    STOPPED = "stopped"


# A recorder's states while supervisord restarts it (stopping, then starting again).
RESTART_STATES = (State.STOPPED, State.STARTING)
# Seconds a recorder restarted on purpose may take to record again before it counts as not recording
# (a restart costs 1-3 s; a release whose recorder does not record at all is refused soon after).
PLANNED_RESTART_GRACE = 10.0
# The state shown for a camera whose recorder never reported.
ABSENT = "absent"


def stall_limit(stall_seconds: float, seg_time: float, keyframe_interval: float | None) -> float:
    """The watchdog's limit: GN_STALL_SECONDS, stretched when keyframes (hence segments) are further apart."""
    extra = max(0.0, (keyframe_interval or seg_time) - seg_time)
    return stall_seconds + extra


def limit_for(settings: Settings, keyframe_interval: float | None = None) -> float:
    """The limit a recorder with these settings uses (`keyframe_interval`: as it measured it, if it did)."""
    return stall_limit(settings.effective_stall_seconds, settings.seg_time, keyframe_interval)


@dataclass(frozen=True)
class Verdict:
    """One camera's verdict at time `t`, as its recorder published it."""

    camera: str
    recording: bool
    # The recorder's state (`absent`: no recorder has reported).
    state: str
    last_segment_end: float | None
    # The recorder's watchdog limit (before its first report: the one its settings give).
    stall_limit: float
    # The recorder's current recording run ('' unknown).
    run: str
    # Why, in one sentence: "camera cam1 is not recording (its recorder reports stopped)".
    why: str
    # The health hash as read (its other fields are for display).
    health: dict[str, str] = field(default_factory=dict, compare=False)

    def age(self, t: float) -> float | None:
        """Seconds between the end of the newest segment and `t`."""
        return None if self.last_segment_end is None else t - self.last_segment_end


def number(value: str | None) -> float | None:
    """A finite float from the health hash (written by another process: may be empty or junk), or None."""
    try:
        x = float(value) if value else math.nan
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def judge(settings: Settings, camera: str, health: dict[str, str], restarting: bool, t: float) -> Verdict:
    """The one rule, applied to a health hash read at `t` (`restarting`: keys.restarting is set)."""
    state = health.get("state") or ABSENT
    end = number(health.get("last_segment_end"))
    # A hash without the limit (no recorder yet, or one older than this rule): the one its settings give.
    published = number(health.get("stall_limit"))
    limit = published or limit_for(settings, number(health.get("keyframe_interval")))
    age = math.inf if end is None else t - end
    planned = state in RESTART_STATES and restarting
    recording = age <= limit + (PLANNED_RESTART_GRACE if planned else 0.0) and (
        state == State.RECORDING or planned
    )
    if state == ABSENT:
        why = f"no recorder has reported for it: start `gravanois recorder --camera {camera}`"
    elif recording and planned:
        why = f"its recorder is restarting on purpose ({state}); its last segment ended {age:.0f} s ago"
    elif recording:
        why = f"its last segment ended {age:.1f} s ago, within its recorder's {limit:g} s limit"
    elif state != State.RECORDING:
        error = health.get("last_error", "")
        why = f"its recorder reports {state}" + (f": {error}" if error else "")
    elif end is None:
        why = "its recorder has closed no segment yet"
    else:
        why = f"no new segment for {age:.0f} s, past its recorder's {limit:g} s limit"
    run = health.get("run", "")
    verb = "is recording" if recording else "is not recording"
    return Verdict(camera, recording, state, end, limit, run, f"camera {camera} {verb} ({why})", health)


def verdict(conn: redis.Redis, settings: Settings, camera: str, t: float) -> Verdict:
    """Read one camera's verdict from its recorder's health hash (one round trip). Raises RedisError."""
    pipe = conn.pipeline(transaction=False)
    pipe.hgetall(keys.camera_health(settings.device_id, camera))
    pipe.exists(keys.restarting(settings.device_id))
    raw, restarting = pipe.execute()
    health = {text(k): text(v, errors="replace") for k, v in raw.items()}
    return judge(settings, camera, health, bool(restarting), t)
