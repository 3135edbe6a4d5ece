"""How a watermarked piece is encoded: the one recipe of the build's pieces and the ahead encoder's batches.

A piece is one ffmpeg run over a run of MPEG-TS segments: the logo drawn, the camera's audio copied,
timestamps kept (`-copyts`), so that pieces of one recipe join by a stream copy into what the single
pass makes of the raw clip. The build (worker.progressive) and the ahead encoder (worker.ahead) both
encode with a `Recipe`, and the ahead cache is kept per recipe (`Recipe.key`): every ffmpeg argument list
for a piece or a batch is built here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from common.budget import Size, VideoEncoder
from common.ffmpeg import FFmpegError, base_args, run
from common.fsutil import atomic_output
from common.segments import Segment
from common.settings import Settings
from common.watermark import Watermark, filtergraph, input_args, outputs, paced
from worker import encoders
from worker.engines import x264_args

# An ffmpeg run per piece may take this long per second of video, plus a base (a Pi is slow).
PIECE_TIMEOUT_BASE, PIECE_TIMEOUT_PER_SECOND = 60.0, 4.0
# A keyframe every this many seconds in the pieces: the thumbnail's seek decodes at most that much.
PIECE_GOP_SECONDS = 2.0


def applies(settings: Settings) -> bool:
    """Whether this box's render settings allow the progressive path (pieces this recipe can encode)."""
    return (
        settings.wm_progressive
        and settings.wm_engine == "ffmpeg"
        and settings.wm_at == "render"
        and settings.wm_encoder == "libx264"
        and not settings.wm_vertical
    )


@dataclass(frozen=True)
class Recipe:
    """How one camera stream's pieces are encoded. Pieces of one recipe join; `key` names it."""

    rate: str
    graph: str
    logo_inputs: tuple[str, ...]
    codec: tuple[str, ...]
    key: str

    @classmethod
    def of(
        cls,
        settings: Settings,
        wm: Watermark,
        segment: Path,
        encoder: VideoEncoder = VideoEncoder.SOFTWARE,
        size: Size = Size.SOURCE,
    ) -> Recipe:
        """The recipe for the stream `segment` belongs to (its size and rate, read once per run), with
        the render budget's encoder and output size (worker.encoders) when they are not the default."""
        if encoder is VideoEncoder.SOFTWARE and size is Size.SOURCE:
            width, rate = video_format(segment)
            graph = paced(rate, lambda video: filtergraph(wm, width, video=video))
            codec = [
                *x264_args(settings.wm_preset, settings.wm_crf),
                # A keyframe every couple of seconds, so the thumbnail's seek decodes little.
                *("-force_key_frames", f"expr:gte(t,n_forced*{PIECE_GOP_SECONDS})"),
            ]
        else:
            stream = encoders.stream_of(segment)
            rate = stream.rate
            graph = encoders.graph(wm, rate, stream.width, stream.height, size)
            out = encoders.out_size(size, stream.width, stream.height)
            codec = encoders.codec_args(encoder, *out, stream.fps, settings.wm_preset, settings.wm_crf)
        logos = input_args(wm)
        # The logo's file, not just its name: a new logo at the same path is a new recipe.
        stamps = [(str(p), (st := p.stat()).st_size, st.st_mtime_ns) for p in wm.logos]
        text = json.dumps([rate, graph, codec, logos, stamps])
        key = hashlib.sha256(text.encode()).hexdigest()[:16]
        return cls(rate, graph, tuple(logos), tuple(codec), key)

    def encode(self, segments: list[Segment], buffer: Path, out: Path) -> None:
        """Watermark a run of segments (files in `buffer`) into the piece `out`, written atomically."""
        seconds = segments[-1].end - segments[0].start
        sources = [buffer / s.name for s in segments]
        with atomic_output(out) as tmp:
            args = piece_args(sources, list(self.logo_inputs), self.graph, list(self.codec), tmp)
            run(args, PIECE_TIMEOUT_BASE + PIECE_TIMEOUT_PER_SECOND * seconds, what="watermark piece")


def piece_args(
    sources: list[Path], logo_inputs: list[str], graph: str, codec: list[str], out: Path
) -> list[str]:
    """ffmpeg: watermark a run of MPEG-TS segments into one MPEG-TS piece, audio copied, clock kept."""
    return [
        *base_args(),
        "-copyts",
        "-i",
        "concat:" + "|".join(str(p) for p in sources),
        *logo_inputs,
        "-filter_complex",
        graph,
        "-map",
        outputs()[0],
        "-map",
        "0:a?",
        *codec,
        "-fps_mode",
        "passthrough",
        "-c:a",
        "copy",
        "-muxdelay",
        "0",
        "-muxpreload",
        "0",
        "-f",
        "mpegts",
        str(out),
    ]


def video_format(path: Path) -> tuple[int | None, str]:
    """A segment's video width and exact frame rate (common.ffmpeg.frame_rate, like "30000/1001")."""
    stream, rate = encoders.video_stream(path)
    if rate is None:
        raise FFmpegError(f"{path.name} has no frame rate")
    return int(stream.get("width") or 0) or None, rate
