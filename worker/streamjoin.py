"""A join that is written while its files still arrive, so that little is left to do at `t + post`.

When the button is pressed, most of the window is recorded (and, with the ahead encoder, watermarked).
A one-shot join at `t + post` would read and write all of it then, and once more for `+faststart`: at
720p about a second per 100 s of window. Instead, one ffmpeg per join starts as soon as the window's
first file exists and reads MPEG-TS from a pipe; the build feeds it each file (a segment of one
recording run, or a watermarked piece) as it closes, in window order. Byte for byte this is the
concat protocol's input, so the packets are the same. ffmpeg writes the MP4's media as they come and
its index into space reserved at the front (`-moov_size`): the file is laid out as `+faststart` lays it
out, without the second pass. At `t + post` only the last files and the index are left to write.

A join that cannot go on (a file that does not follow, ffmpeg gone, the index outgrowing its space) is
aborted, and the caller joins the files the one-shot way: slower, never wrong.
"""

from __future__ import annotations

import contextlib
import os
import struct
import subprocess
import tempfile
from pathlib import Path

from common import proc
from common.ffmpeg import FFmpegError, base_args, mp4_copy_args, tail
from common.fsutil import fsync_dir, tmp_path_for

# Room for the MP4 index: about 8 bytes a sample in stts/stsz/ctts/stco, twice that for safety,
# for every video frame and audio frame (AAC: 1024 samples; 48 kHz gives about 47 a second).
INDEX_BYTES_PER_SAMPLE = 16
AUDIO_FRAMES_PER_SECOND = 50
INDEX_BYTES_BASE = 64 * 1024


def index_room(seconds: float, fps: float) -> int:
    """Bytes to reserve at the front of the MP4 for the index of `seconds` of video at `fps` plus audio."""
    samples = seconds * (max(fps, 1.0) + AUDIO_FRAMES_PER_SECOND)
    return INDEX_BYTES_BASE + int(samples * INDEX_BYTES_PER_SAMPLE)


def stream_join_args(out: Path, end: float | None, room: int) -> list[str]:
    """ffmpeg: MPEG-TS on stdin, stream-copied into an MP4 with `room` bytes for its index at the front,
    cut `end` seconds in (as the one-shot join is)."""
    limit = ["-t", f"{end:.3f}"] if end is not None else []
    return [*base_args(), "-f", "mpegts", "-i", "pipe:0", *limit, *mp4_copy_args(out, room)]


class StreamJoin:
    """One MP4 being joined from MPEG-TS files fed in order; `finish()` puts it at `out` atomically."""

    def __init__(self, out: Path, end: float | None, seconds: float, fps: float) -> None:
        self.out = out
        self.tmp = tmp_path_for(out)
        self.fed: list[Path] = []
        self.error = ""
        self.finished = False
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()
        # ffmpeg's messages go to a file: a pipe nobody reads while we write could fill and block it.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by finish or abort)
        args = stream_join_args(self.tmp, end, index_room(seconds, fps))
        self.proc = proc.spawn(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self.log)

    @property
    def alive(self) -> bool:
        """True while files can still be fed (no error so far)."""
        return not self.error

    def extend(self, paths: list[Path]) -> None:
        """Feed the files of `paths` not fed yet; `paths` must begin with the files fed so far."""
        if paths[: len(self.fed)] != self.fed:
            self.abort("the files to join changed after the join began")
            return
        for path in paths[len(self.fed) :]:
            self.feed(path)

    def holds(self, paths: list[Path]) -> bool:
        """True when the join is alive and has been fed exactly `paths`."""
        return self.alive and self.fed == paths

    def feed(self, path: Path) -> None:
        """Append one file's bytes to the join; an error ends the join (see `alive`), it never raises."""
        if self.error:
            return
        assert self.proc.stdin is not None
        try:
            with open(path, "rb") as src:
                size = os.fstat(src.fileno()).st_size
                sent = 0
                while sent < size:
                    n = os.sendfile(self.proc.stdin.fileno(), src.fileno(), sent, size - sent)
                    if n == 0:
                        break
                    sent += n
        except BrokenPipeError:
            # ffmpeg stopped reading: it reached the end (`-t`) or failed; `finish` tells which.
            pass
        except OSError as exc:
            self.abort(f"cannot feed {path.name}: {exc}")
            return
        self.fed.append(path)
        self.flush()

    def flush(self) -> None:
        """Write what ffmpeg has written so far to the disk now, so that `finish` syncs only the tail."""
        with contextlib.suppress(OSError), open(self.tmp, "rb") as fh:
            os.fsync(fh.fileno())

    def finish(self, timeout: float) -> Path:
        """End the input, wait for ffmpeg, then rename the MP4 onto `out`; FFmpegError if it failed."""
        if self.error:
            raise FFmpegError(self.error)
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.abort(f"the join did not finish within {timeout:g} s")
            raise FFmpegError(self.error) from None
        # ffmpeg 5 exits 0 when the index did not fit its room ("Error writing trailer"): the file's
        # layout is the proof that it is whole.
        layout = top_boxes(self.tmp)
        if code != 0 or layout[:2] != ["ftyp", "moov"] or layout[-1:] != ["mdat"]:
            self.log.seek(0)
            self.abort(f"the join failed (exit {code}): {tail(self.log.read())}")
            raise FFmpegError(self.error)
        self.log.close()
        self.flush()
        os.replace(self.tmp, self.out)
        self.finished = True
        fsync_dir(self.out.parent)
        return self.out

    def abort(self, why: str) -> None:
        """Stop ffmpeg and delete its unfinished output; the caller joins the one-shot way."""
        if self.error or self.finished:
            return
        self.error = why
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        with contextlib.suppress(BrokenPipeError, OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        self.log.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()


def top_boxes(path: Path) -> list[str]:
    """The MP4's top-level box types in file order (their headers only); [] unless they tile the file."""
    kinds: list[str] = []
    try:
        with open(path, "rb") as fh:
            size_total, off = os.fstat(fh.fileno()).st_size, 0
            while off < size_total:
                fh.seek(off)
                head = fh.read(16)
                if len(head) < 8:
                    return []
                size, kind = struct.unpack(">I4s", head[:8])
                if size == 1 and len(head) == 16:
                    size = struct.unpack(">Q", head[8:])[0]
                if size < 8:
                    return []
                kinds.append(kind.decode("latin-1"))
                off += size
            return kinds if off == size_total else []
    except OSError:
        return []
