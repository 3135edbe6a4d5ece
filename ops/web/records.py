"""The box's own records of its highlights, as the web app shows them: found by id, never by a path.

Finished highlights are the sidecars in the output dir (the render stage writes a sidecar there only
after the watermarked clip and the thumbnail exist); highlights still being prepared are the Redis
highlight hashes. A request names a highlight by its press id; the files served are derived from the
sidecar found for that id in the output dir, so no part of a request ever becomes a path.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import redis
from rq.job import Job

from common import ids, keys
from common.fsutil import is_tmp, read_json
from common.keys import job_id
from common.pipeline import HighlightState, SidecarStatus, Stage
from common.redisconn import SERIALIZER, scored
from common.settings import Settings
from common.timeutil import now

# A dir whose mtime is younger than this may still change within the same mtime tick: not cached.
SETTLE_SECONDS = 2.0
# Sidecar statuses of a highlight whose watermarked clip and thumbnail are in the output dir.
FINISHED = frozenset(
    {
        SidecarStatus.WATERMARKED,
        SidecarStatus.UPLOADED,
        SidecarStatus.UPLOAD_FAILED,
        SidecarStatus.UPLOAD_BLOCKED,
    }
)
# States of a highlight still on its way (a card with its state and progress on the court page).
PREPARING = frozenset(
    {
        HighlightState.SCHEDULED,
        HighlightState.BUILDING,
        HighlightState.BUILT,
        HighlightState.RETRYING,
        HighlightState.RENDERING,
    }
)
# Share of the whole wait each state has reached, for one progress bar from press to clip; the
# render's own percent fills the part between RENDERING and done.
_PROGRESS = {
    HighlightState.SCHEDULED: 0.0,
    HighlightState.BUILDING: 30.0,
    HighlightState.BUILT: 35.0,
    HighlightState.RETRYING: 35.0,
    HighlightState.RENDERING: 40.0,
}


@dataclass(frozen=True)
class Highlight:
    """One highlight as the pages show it; `video`/`thumb` are set only when it is finished."""

    id: str
    camera: str
    at: float
    state: str
    progress: float | None = None
    duration: float | None = None
    video: Path | None = None
    thumb: Path | None = None
    sha256: str = ""
    size: int = 0

    @property
    def finished(self) -> bool:
        """True when the clip can be played and downloaded."""
        return self.video is not None


class Records:
    """Finished highlights from the output dir's sidecars (re-read when the dir changes) + Redis states."""

    def __init__(self, settings: Settings, conn: redis.Redis) -> None:
        self.settings = settings
        self.conn = conn
        self.cameras = [c.id for c in settings.cameras]
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._finished: dict[str, Highlight] = {}

    # ---- finished highlights (files)

    def finished(self) -> dict[str, Highlight]:
        """Every finished highlight of a configured camera, by id; cached until the output dir changes."""
        out_dir = self.settings.output_dir
        try:
            st = out_dir.stat()
            stamp = (st.st_mtime_ns, st.st_ino)
        except OSError:
            return {}
        with self._lock:
            # Outputs are renamed into place, so every new or changed sidecar changes the dir's mtime.
            # A render renames several files within one clock tick of the file system, so a dir changed
            # in the last moments is read again rather than trusted.
            settled = now() - st.st_mtime > SETTLE_SECONDS
            if stamp != self._stamp or not settled:
                self._finished = self._scan(out_dir)
                self._stamp = stamp
            return self._finished

    def _scan(self, out_dir: Path) -> dict[str, Highlight]:
        found: dict[str, Highlight] = {}
        with os.scandir(out_dir) as entries:
            names = [e.name for e in entries if e.name.endswith(".json") and e.is_file(follow_symlinks=False)]
        for name in names:
            path = out_dir / name
            if is_tmp(path):
                continue
            try:
                data = read_json(path)
            except (OSError, ValueError):
                continue
            item = self._from_sidecar(path, data)
            if item is not None:
                found[item.id] = item
        return found

    def _from_sidecar(self, path: Path, data: Any) -> Highlight | None:
        if not isinstance(data, dict) or data.get("status") not in FINISHED:
            return None
        hid = str(data.get("press_id") or "")
        parsed = ids.parse_press_id(hid)
        if parsed is None or parsed[0] not in self.cameras or data.get("camera") != parsed[0]:
            return None
        stem = path.stem
        video, thumb = path.with_name(f"{stem}.mp4"), path.with_name(f"{stem}.jpg")
        if not video.is_file():
            return None
        meta_wm = data.get("meta_wm")
        meta = meta_wm if isinstance(meta_wm, dict) else {}
        duration = meta.get("duration_sec") if isinstance(meta.get("duration_sec"), int | float) else None
        return Highlight(
            id=hid,
            camera=parsed[0],
            at=parsed[1],
            state=HighlightState.DONE,
            progress=100.0,
            duration=duration,
            video=video,
            thumb=thumb if thumb.is_file() else None,
            sha256=str(data.get("wm_sha256") or ""),
            size=int(data.get("wm_size_bytes") or 0),
        )

    def get(self, hid: str) -> Highlight | None:
        """The finished highlight with this id, or None (malformed, unknown camera, not finished)."""
        if ids.parse_press_id(hid) is None:
            return None
        return self.finished().get(hid)

    # ---- highlights on their way (Redis)

    def preparing(self, camera: str, since: float) -> list[Highlight]:
        """Highlights of a camera pressed after `since` and not finished yet, with state and progress.

        Redis down: none (the finished ones still come from the files).
        """
        device = self.settings.device_id
        out = []
        try:
            found = scored(
                self.conn.zrevrangebyscore(keys.highlights(device), "+inf", since, withscores=True)
            )
            mine = []
            for member, score in found:
                hid = member.decode() if isinstance(member, bytes) else str(member)
                parsed = ids.parse_press_id(hid)
                if parsed is not None and parsed[0] == camera:
                    mine.append((hid, float(score)))
            # One round trip for all the states: a court page is polled every few seconds by every phone.
            pipe = self.conn.pipeline(transaction=False)
            for hid, _ in mine:
                pipe.hget(keys.highlight(device, hid), "state")
            states = pipe.execute() if mine else []
            for (hid, at), state in zip(mine, states, strict=True):
                text = state.decode() if isinstance(state, bytes) else str(state or "")
                if text in PREPARING:
                    out.append(
                        Highlight(
                            id=hid, camera=camera, at=at, state=text, progress=self._progress(hid, text, at)
                        )
                    )
        except redis.RedisError:
            return []
        return out

    def _progress(self, hid: str, state: str, at: float) -> float:
        base = _PROGRESS.get(HighlightState(state), 0.0)
        if state == HighlightState.SCHEDULED:
            # Waiting for the post-roll: the share of it already recorded.
            post = self.settings.post_seconds or 1.0
            return round(min(1.0, max(0.0, (now() - at) / post)) * 30.0, 1)
        if state == HighlightState.RENDERING:
            pct = 0.0
            with contextlib.suppress(Exception):
                job = Job.fetch(
                    job_id(self.settings.device_id, hid, Stage.RENDER),
                    connection=self.conn,
                    serializer=SERIALIZER,
                )
                pct = float(job.meta.get("progress") or 0.0)
            return round(base + (100.0 - base) * min(pct, 100.0) / 100.0, 1)
        return base

    # ---- listings

    def court(self, camera: str, days: float | None = None) -> list[Highlight]:
        """A court's highlights of the last GN_WEB_DAYS days, newest first: finished and on their way."""
        since = now() - 86400 * (self.settings.web_days if days is None else days)
        done = [h for h in self.finished().values() if h.camera == camera and h.at >= since]
        done_ids = {h.id for h in done}
        pending = [h for h in self.preparing(camera, since) if h.id not in done_ids]
        return sorted(done + pending, key=lambda h: h.at, reverse=True)

    def newest_finished(self, camera: str) -> Highlight | None:
        """The newest finished highlight of a camera (what the courtside screen plays)."""
        mine = [h for h in self.finished().values() if h.camera == camera]
        return max(mine, key=lambda h: h.at) if mine else None


def local_time(settings: Settings, at: float, fmt: str = "%H:%M") -> str:
    """A press time in the venue's time zone (GN_TIMEZONE), as players read it."""
    return datetime.fromtimestamp(at, tz=UTC).astimezone(ZoneInfo(settings.timezone)).strftime(fmt)
