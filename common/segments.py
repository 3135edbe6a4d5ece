"""The segment index and the pins: the one authoritative record of what each camera has on disk.

The recorder adds each *closed* segment with its wall-clock UTC start and end and the recording run it
was cut from; workers ask which segments cover a window, and which of them the concat protocol may join
(`runs`); the trigger pins a window so that retention keeps it until the clip is built. Pins expire by
themselves, so a crashed job cannot pin forever.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as json_string

import redis

from common import keys
from common.redisconn import members
from common.timeutil import now

# How far before a window's start to look for a segment that still overlaps it (longest segment).
MAX_SEGMENT_SECONDS = 120.0
# Holes between segments shorter than this are timestamp jitter, not a camera outage.
GAP_TOLERANCE = 0.25
# Segments of one run tile exactly (names in ms): one ends where the next starts.
CONTIGUOUS = 0.0015


@dataclass(frozen=True, order=True)
class Segment:
    """A closed segment file (name inside the camera's buffer dir), its wall-clock start/end and its run.

    `run` names the recording run the recorder cut it from: one ffmpeg run's continuous stream, its
    timestamps kept (recorder/indexer.py). '' is an unknown run: indexed before segments carried one.
    """

    start: float
    end: float
    name: str
    run: str = ""

    @property
    def duration(self) -> float:
        """Seconds of video in the segment."""
        return self.end - self.start

    def member(self) -> str:
        """The exact ZSET member (reproducible, so it can be removed): JSON, keys sorted.

        Written out as `json.dumps(…, sort_keys=True)` writes it (a float's repr, the name and run as ASCII
        JSON strings), without building an encoder for each call: the recorder does this every second.
        An unknown run is left out, so such a segment's member is the one an older recorder wrote.
        """
        start, end = round(self.start, 6), round(self.end, 6)
        run = f'"run": {json_string(self.run)}, ' if self.run else ""
        return f'{{"end": {end!r}, "name": {json_string(self.name)}, {run}"start": {start!r}}}'

    @classmethod
    def from_member(cls, member: bytes | str) -> Segment:
        """Parse a ZSET member (one without a run, as older recorders wrote them: an unknown run)."""
        d = json.loads(member)
        return cls(
            start=float(d["start"]), end=float(d["end"]), name=str(d["name"]), run=str(d.get("run", ""))
        )

    def overlaps(self, a: float, b: float) -> bool:
        """True if the segment shares any time with [a, b]."""
        return self.end > a and self.start < b

    def continues(self, prev: Segment) -> bool:
        """True when this segment came right after `prev` in one recording run, so the concat protocol
        joins the two byte for byte. The recorder's run ids say "one stream"; the index's tiling says
        that no segment of the run is missing between them. A segment of an unknown run joins nothing."""
        return bool(prev.run) and self.run == prev.run and abs(self.start - prev.end) <= CONTIGUOUS


def runs(segments: list[Segment]) -> list[list[Segment]]:
    """Segments (sorted) grouped into stretches the concat protocol joins: each from one recording run,
    none missing in between. The raw clip's join, the progressive render and the ahead encoder use this."""
    out: list[list[Segment]] = []
    for seg in segments:
        if out and seg.continues(out[-1][-1]):
            out[-1].append(seg)
        else:
            out.append([seg])
    return out


@dataclass(frozen=True)
class Pin:
    """A window [start, end] of one camera that retention must keep until `expires`."""

    pin_id: str
    start: float
    end: float
    expires: float

    def covers(self, seg: Segment) -> bool:
        """True if this pin needs `seg`."""
        return seg.overlaps(self.start, self.end)


class SegmentIndex:
    """Redis view of one camera's segments and pins."""

    def __init__(self, conn: redis.Redis, device: str, camera: str) -> None:
        self.conn = conn
        self.camera = camera
        self.seg_key = keys.segments(device, camera)
        self.pin_key = keys.pins(device, camera)

    # --- segments (written by the recorder; `pipe`: queue the command on that pipeline instead)
    def add(self, *segments: Segment, pipe: redis.client.Pipeline | None = None) -> None:
        """Index closed segments."""
        if segments:
            (pipe or self.conn).zadd(self.seg_key, {s.member(): s.start for s in segments})

    def remove(self, *segments: Segment, pipe: redis.client.Pipeline | None = None) -> None:
        """Forget segments (their files are being deleted)."""
        if segments:
            (pipe or self.conn).zrem(self.seg_key, *(s.member() for s in segments))

    def replace_all(self, segments: list[Segment]) -> None:
        """Make the index exactly `segments` (the recorder's rebuild from disk at start)."""
        pipe = self.conn.pipeline(transaction=True)
        pipe.delete(self.seg_key)
        if segments:
            pipe.zadd(self.seg_key, {s.member(): s.start for s in segments})
        pipe.execute()

    def all(self) -> list[Segment]:
        """Every indexed segment, oldest first."""
        return [Segment.from_member(m) for m in members(self.conn.zrange(self.seg_key, 0, -1))]

    def latest(self) -> Segment | None:
        """The newest closed segment, if any."""
        found = members(self.conn.zrange(self.seg_key, -1, -1))
        return Segment.from_member(found[0]) if found else None

    def after(self, t: float) -> list[Segment]:
        """Segments that started after `t`, oldest first (what closed since one already seen)."""
        found = members(self.conn.zrangebyscore(self.seg_key, f"({t!r}", "+inf"))
        return [Segment.from_member(m) for m in found]

    def last_before(self, t: float) -> Segment | None:
        """The newest segment that started at or before `t` (what a camera last recorded by then)."""
        found = members(self.conn.zrevrangebyscore(self.seg_key, t, "-inf", start=0, num=1))
        return Segment.from_member(found[0]) if found else None

    def covering(self, a: float, b: float) -> list[Segment]:
        """Segments overlapping [a, b], oldest first."""
        found = members(self.conn.zrangebyscore(self.seg_key, a - MAX_SEGMENT_SECONDS, b))
        return [s for s in map(Segment.from_member, found) if s.overlaps(a, b)]

    # --- pins (written by the trigger and the build job, read by the recorder's retention)
    def pin(self, pin_id: str, start: float, end: float, ttl: float) -> None:
        """Keep segments overlapping [start, end] for at least `ttl` seconds from now."""
        self.unpin(pin_id)
        self.conn.zadd(self.pin_key, {f"{pin_id}|{start:.6f}|{end:.6f}": now() + ttl})

    def unpin(self, pin_id: str) -> None:
        """Release a pin (the clip is built, or the press was refused)."""
        stale = [m for m, _ in self.conn.zscan_iter(self.pin_key, match=f"{pin_id}|*")]
        if stale:
            self.conn.zrem(self.pin_key, *stale)

    def pins(self) -> list[Pin]:
        """Pins still in force (expired ones are dropped as a side effect)."""
        pipe = self.conn.pipeline(transaction=False)
        self.read_pins(pipe)
        return self.pins_from(pipe.execute()[-1])

    def read_pins(self, pipe: redis.client.Pipeline, sweep: bool = True) -> None:
        """Queue on `pipe` what `pins()` does (`sweep=False`: leave expired pins for a later sweep);
        `pins_from` parses the pipeline's last reply."""
        if sweep:
            pipe.zremrangebyscore(self.pin_key, "-inf", now())
        pipe.zrange(self.pin_key, 0, -1, withscores=True)

    @staticmethod
    def pins_from(reply: list[tuple[bytes | str, float]], t: float | None = None) -> list[Pin]:
        """Pins from the reply of `read_pins`' ZRANGE (those still in force at `t`, if given)."""
        result = []
        for member, score in reply:
            if t is not None and score <= t:
                continue
            text = member.decode() if isinstance(member, bytes) else member
            pin_id, start, end = text.rsplit("|", 2)
            result.append(Pin(pin_id, float(start), float(end), float(score)))
        return result
