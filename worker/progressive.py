"""The progressive render's build side: the window's segments watermarked while the post-roll records.

When the button is pressed, most of the window already exists. The build job, while it waits for the
segment that closes `t + post`, turns the closed segments of the window into watermarked pieces (one
ffmpeg run per batch of segments, the camera's audio copied, timestamps kept: worker.recipe); at
`t + post` only the last segments remain. The render job then joins the pieces with a stream copy: no
second encode (worker.pieces).

With the ahead encoder on (`gravanois ahead`, worker/ahead.py), most pieces exist before the press: it
watermarks each camera's newest segments in batches as they close, into a cache (worker.aheadcache). The
build takes every cached batch that lies inside its window (a hard link) and encodes only the rest: the
window's first seconds (up to one batch) and what closed since the last batch. When the ahead encoder is
running for the camera (`defer`), the build leaves the segments after its newest batch to it while the
post-roll records, and encodes what is still missing once the window is complete (less than a batch;
when more is missing, the ahead encoder was behind, and the build waits for it as long as it makes
progress): a press then costs about one batch of encoding instead of its whole post-roll encoded twice,
which is what lets a small box keep up with a busy court. Without it, what is left at `t + post` is the last
segment, whatever the window's length.

The pieces are cut where the segments are (on the camera's keyframes) from one recording run (the
recorder's run ids: common.segments.runs) and keep its timestamps (`-copyts`), so their join is the same
frames, the same audio packets and the same clock as the single-pass render of the raw clip. A piece
from the cache joins as well as one of the build's own: both come from one `Recipe`, and the cache is
kept per recipe.
Anything that breaks those assumptions (a gap in the window, a segment from another recording run, an
engine or encoder that is not ffmpeg's libx264, the 9:16 crop) makes the build drop the pieces, and the
render takes the single-pass path.
"""

from __future__ import annotations

import itertools
import shutil
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from common.budget import Size, VideoEncoder
from common.ffmpeg import FFmpegError
from common.fsutil import link_or_copy, write_json_atomic
from common.log import event, get_logger
from common.segments import GAP_TOLERANCE, Segment
from common.settings import Settings
from common.watermark import Watermark
from worker.aheadcache import BATCH_SECONDS, FLUSH_TOLERANCE, AheadCache
from worker.pieces import JOINED, MANIFEST, frame_facts, pieces_dir
from worker.recipe import PIECE_TIMEOUT_BASE, Recipe
from worker.streamjoin import StreamJoin
from worker.tsfiles import clip_end

log = get_logger(__name__)

# A build whose window is complete waits for the ahead encoder while a new batch of the window comes at
# least this often (a batch is BATCH_SECONDS of video, encoded in about as long on a loaded Pi).
AHEAD_STALL_SECONDS = 3 * BATCH_SECONDS
AHEAD_POLL_SECONDS = 0.2


@dataclass
class Encoder:
    """The pieces of one highlight, made as its segments close (used by the build job)."""

    settings: Settings
    stem: str
    camera: str
    window_end: float
    seen: list[Segment] = field(default_factory=list)
    pieces: list[dict[str, Any]] = field(default_factory=list)
    broken: str = ""
    # The render budget's encoder and output size for this camera (worker.budget), as the ahead encoder
    # uses them: pieces of one recipe join, and the cache is found by the recipe's key.
    option: tuple[VideoEncoder, Size] = (VideoEncoder.SOFTWARE, Size.SOURCE)
    # The ahead encoder runs for this camera: segments after its newest batch wait for it until the
    # window is complete (see the module's docstring).
    defer: bool = False

    def __post_init__(self) -> None:
        self.buffer = self.settings.camera_buffer_dir(self.camera)
        self.dir = pieces_dir(self.settings, self.stem)
        shutil.rmtree(self.dir, ignore_errors=True)  # an earlier attempt's pieces: start clean
        self.dir.mkdir(parents=True)
        self.wm = Watermark.from_settings(self.settings)
        self.recipe: Recipe | None = None
        self.cache: AheadCache | None = None
        self.join: StreamJoin | None = None

    def advance(self, closed: list[Segment], complete: bool = False) -> None:
        """Make pieces for the window's closed segments that have none yet: from the ahead cache where
        it holds them, else encoded here (one piece per stretch). `complete`: these are all of the
        window's segments (nothing is left to the ahead encoder any more)."""
        if self.broken:
            return
        new = [s for s in sorted(closed) if not self.seen or s.start > self.seen[-1].start]
        if not new and not (complete and self.deferred()):
            return
        for prev, seg in itertools.pairwise([*self.seen[-1:], *new]):
            if not seg.continues(prev):
                self.give_up("a gap or a new recording run in the window")
                return
        self.seen += new
        if self.recipe is None:
            try:
                self.recipe = Recipe.of(self.settings, self.wm, self.buffer / self.seen[0].name, *self.option)
            except (FFmpegError, OSError) as exc:
                self.give_up(f"cannot read {self.seen[0].name}: {exc}")
                return
            self.cache = AheadCache(self.settings, self.camera, self.recipe)
        if complete and self.defer:
            self.wait_for_ahead()
        try:
            self.fill(complete)
        except (FFmpegError, OSError) as exc:
            self.give_up(str(exc))
            return
        self.pieces.sort(key=lambda p: self.position[p["segments"][0]])
        write_json_atomic(self.dir / MANIFEST, {"pieces": self.pieces})
        self.stream()

    def wait_for_ahead(self) -> None:
        """The window is complete, and after the ahead encoder's newest batch in it come a whole batch's
        seconds or more: it is encoding them (or was behind). Wait while it makes progress, until less than
        a batch is left (a batch it will only cut when later segments close): encoding its backlog here
        instead would encode those seconds twice, and the two encodes, sharing a small box's CPU, would put
        it further behind at the next press."""
        if self.cache is None or not self.seen:
            return
        end = self.seen[-1].end
        newest, progressed = self.cached_end(), time.monotonic()
        if not newest:
            return  # none of its batches is in this window: it is not about to cover it
        while end - newest >= BATCH_SECONDS - FLUSH_TOLERANCE:
            if time.monotonic() - progressed > AHEAD_STALL_SECONDS:
                event(log, "ahead_stalled", 30, highlight=self.stem, cached_until=newest, window_end=end)
                return  # it stopped: the rest is encoded here
            time.sleep(AHEAD_POLL_SECONDS)
            cached = self.cached_end()
            if cached > newest:
                newest, progressed = cached, time.monotonic()

    def cached_end(self) -> float:
        """The end of the newest cached batch among the window's segments (0 when none is)."""
        assert self.cache is not None
        names = {s.name for s in self.seen}
        return max((b.end for b in self.cache.batches() if b.segments[-1] in names), default=0.0)

    @property
    def position(self) -> dict[str, int]:
        """Each seen segment's place in the window."""
        return {s.name: i for i, s in enumerate(self.seen)}

    def fill(self, complete: bool = False) -> None:
        """Pieces for every seen segment without one: cached batches first, then own encodes (but for
        the segments left to the ahead encoder, until the window is `complete`)."""
        assert self.recipe is not None and self.cache is not None
        held = self.held()
        names = [s.name for s in self.seen]
        batches = self.cache.batches()
        for batch in batches:
            if held.intersection(batch.segments) or batch.segments[0] not in names:
                continue
            i = names.index(batch.segments[0])
            if tuple(names[i : i + len(batch.segments)]) != batch.segments:
                continue  # the batch runs past the segments seen so far
            name = f"a{len(self.pieces):03d}.ts"
            try:
                link_or_copy(batch.path, self.dir / name)
            except FileNotFoundError:
                continue  # retention took it just now: encode those segments here instead
            facts = batch.video or frame_facts(self.dir / name)
            self.pieces.append(
                {"file": name, "segments": list(batch.segments), "from": "ahead", "video": facts}
            )
            held.update(batch.segments)
        todo = [s for s in self.seen if s.name not in held]
        if self.defer and not complete and batches:
            # What comes after the ahead encoder's newest batch is its work to come; what comes before
            # it that no batch holds never will be (segments from before its recipe changed, or before
            # it started): those are encoded here now. Without any batch of this recipe yet, where it
            # will start is not known: nothing is left to it.
            newest = max(b.end for b in batches)
            todo = [s for s in todo if s.start < newest - GAP_TOLERANCE]
        for segs in stretches(todo, self.position):
            name = f"p{len(self.pieces):03d}.ts"
            self.recipe.encode(segs, self.buffer, self.dir / name)
            facts = frame_facts(self.dir / name)
            self.pieces.append(
                {"file": name, "segments": [s.name for s in segs], "from": "build", "video": facts}
            )

    def stream(self) -> None:
        """Feed the pieces' join (worker.streamjoin) the pieces made since, in window order; it starts
        with the window's first piece and ends where the raw clip will (`window_end`)."""
        assert self.recipe is not None
        paths = [self.dir / p["file"] for p in self.pieces]
        if not paths:
            return  # every seen segment is left to the ahead encoder for now
        if self.join is None:
            rate = float(Fraction(self.recipe.rate))
            window = self.window_end - self.seen[0].start
            self.join = StreamJoin(self.dir / JOINED, clip_end(paths[0], window, rate), window, rate)
        self.join.extend(paths)

    def held(self) -> set[str]:
        """The names of the segments a piece holds."""
        return {name for piece in self.pieces for name in piece["segments"]}

    def deferred(self) -> bool:
        """True when seen segments have no piece yet (left to the ahead encoder)."""
        held = self.held()
        return any(s.name not in held for s in self.seen)

    def give_up(self, why: str) -> None:
        """Stop making pieces: the render will take the single-pass path."""
        self.broken = why
        event(log, "progressive_off", 30, highlight=self.stem, reason=why)
        self.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def close(self) -> None:
        """Stop the pieces' join unless it finished (the build ended, for whatever reason)."""
        if self.join is not None:
            self.join.abort("the build ended")

    def finish(self, used: list[Segment], window: float | None = None) -> dict[str, Any] | None:
        """After the raw clip: the pieces for the sidecar if they hold exactly its segments, else None.

        `window`: the seconds from the clip's first video frame to its end, when the raw clip was cut
        there; the join of the pieces is cut there too (measured on the pieces' own timestamps)."""
        self.advance(used, complete=True)
        held = [name for piece in self.pieces for name in piece["segments"]]
        if self.broken or held != [s.name for s in sorted(used)]:
            if not self.broken:
                self.give_up("the pieces do not hold the clip's segments")
            return None
        assert self.recipe is not None
        first = self.dir / self.pieces[0]["file"]
        end = clip_end(first, window, float(Fraction(self.recipe.rate))) if window is not None else None
        ahead = sum(1 for p in self.pieces if p["from"] == "ahead")
        pieces = [p["file"] for p in self.pieces]
        info = {"dir": self.dir.name, "pieces": pieces, "end": end, "ahead_pieces": ahead}
        return {**info, "joined": self.finish_join()}

    def finish_join(self) -> str | None:
        """Finish the pieces' join if it holds every piece: its file name, else None (the render then
        joins the pieces itself)."""
        paths = [self.dir / p["file"] for p in self.pieces]
        if self.join is None or not self.join.holds(paths):
            self.close()
            return None
        try:
            self.join.finish(PIECE_TIMEOUT_BASE + (self.window_end - self.seen[0].start))
        except FFmpegError as exc:
            event(log, "stream_join_failed", 30, highlight=self.stem, reason=str(exc))
            return None
        return JOINED


def stretches(segments: list[Segment], position: dict[str, int]) -> list[list[Segment]]:
    """`segments` (in window order) cut where one is not the next of the window (`position`)."""
    out: list[list[Segment]] = []
    for seg in segments:
        if out and position[seg.name] == position[out[-1][-1].name] + 1:
            out[-1].append(seg)
        else:
            out.append([seg])
    return out
