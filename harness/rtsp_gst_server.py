"""A GStreamer RTSP server on loopback serving a live test camera: H.264 or H.265, AAC, G.711 or no audio.

The picture is encoded live by default. `--loop-seconds N` (H.264 only) encodes N seconds of it once at
start and sends them in a loop, live (each frame at its time, timestamps going on): a camera that costs
next to nothing, for tests that hold the box to a CPU budget. Drawing and encoding a 1080p30 test pattern
live takes 0.6 of a core here per camera, so two of them beside an emulated Pi's budget (0.97 of a core)
asked more than this 2-core machine has, and the box, not the cameras, paid for it.

Run by the system interpreter, /usr/bin/python3, which has GStreamer's Python bindings (python3-gi,
gir1.2-gst-rtsp-server-1.0); the tests drive it through harness/rtsp_server.py. Prints `ready <port>`
once it listens; SIGTERM/SIGINT stop it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

VIDEO_CODECS = ("h264", "h265")
AUDIO_CODECS = ("none", "aac", "alaw", "mulaw")


def video_branch(codec: str, width: int, height: int, fps: int, gop_frames: int, slices: int) -> str:
    """Live test pattern → x264/x265 (a keyframe every gop_frames, `slices` slices a frame) → RTP."""
    src = (
        f"videotestsrc is-live=true pattern=ball ! video/x-raw,width={width},height={height},"
        f"framerate={fps}/1"
    )
    if codec == "h265":
        # Several slices make each IDR arrive as several packets, as some cameras' encoders do.
        opts = f" option-string=slices={slices}" if slices > 1 else ""
        enc = f"x265enc tune=zerolatency speed-preset=ultrafast key-int-max={gop_frames}{opts}"
        return f"{src} ! {enc} ! rtph265pay name=pay0 pt=96 config-interval=-1"
    # zerolatency alone turns sliced threads on: one slice per frame unless `slices` asks for more.
    opts = f" option-string=slices={slices}" if slices > 1 else " sliced-threads=false"
    enc = f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop_frames}{opts}"
    return f"{src} ! {enc} ! rtph264pay name=pay0 pt=96 config-interval=-1"


def looped_video_branch(width: int, height: int, fps: int) -> str:
    """Pre-encoded H.264 access units, pushed live by `Feeder` → RTP."""
    caps = (
        f"video/x-h264,stream-format=byte-stream,alignment=au,width={width},height={height},framerate={fps}/1"
    )
    src = f"appsrc name=looped is-live=true format=time min-latency=0 max-latency=1000000000 caps={caps}"
    return f"{src} ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1"


def prerecord(width: int, height: int, fps: int, gop_frames: int, seconds: float) -> list[bytes]:
    """`seconds` of the live branch's picture (rounded up to whole GOPs, so the loop starts again on a
    keyframe), encoded as fast as the machine can: one H.264 access unit per frame."""
    frames = max(1, -(-round(seconds * fps) // gop_frames)) * gop_frames
    pipeline = Gst.parse_launch(
        f"videotestsrc pattern=ball num-buffers={frames} ! "
        f"video/x-raw,format=I420,width={width},height={height},framerate={fps}/1 ! "
        f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop_frames} sliced-threads=false ! "
        "video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=out sync=false"
    )
    out = pipeline.get_by_name("out")
    pipeline.set_state(Gst.State.PLAYING)
    units = []
    while (sample := out.emit("pull-sample")) is not None:
        buffer = sample.get_buffer()
        units.append(buffer.extract_dup(0, buffer.get_size()))
    pipeline.set_state(Gst.State.NULL)
    if len(units) != frames:
        raise SystemExit(f"pre-encoding the looped picture gave {len(units)} frames of {frames}")
    return units


class Feeder:
    """Pushes the looped access units into one media's appsrc at the frame rate, by the pipeline's running
    time: frame n at base + n/fps. When that timeline is off by more than a second (the camera was stopped
    by SIGSTOP, or a client's seek reset the running time) it goes on from now, as a camera's clock does,
    without a burst of missed frames; the picture goes on where it stopped, a decodable sequence."""

    TICK_MS = 5

    def __init__(self, media: GstRtspServer.RTSPMedia, units: list[bytes], fps: int) -> None:
        self.appsrc = media.get_element().get_by_name("looped")
        # A client's PLAY seeks the media to its start; the test pattern beside it (audio) can, so this
        # source must say it can too (a seek changes nothing here).
        self.appsrc.set_property("stream-type", 1)  # GST_APP_STREAM_TYPE_SEEKABLE
        self.appsrc.connect("seek-data", lambda _src, _offset: True)
        self.units, self.fps = units, fps
        self.base = 0  # the running time of frame 0
        self.frame = -1  # the next frame's number on the timeline (none yet)
        self.unit = 0  # the next access unit of the loop
        self.timer = GLib.timeout_add(self.TICK_MS, self.tick)
        media.connect("unprepared", self.end)

    def at(self, frame: int) -> int:
        return int(self.base + frame * Gst.SECOND // self.fps)

    def end(self, _media: GstRtspServer.RTSPMedia) -> None:
        GLib.source_remove(self.timer)

    def tick(self) -> bool:
        now = self.appsrc.get_current_running_time()
        if now == Gst.CLOCK_TIME_NONE:
            return True  # not playing
        due = (now - self.base) * self.fps // Gst.SECOND + 1 if now >= self.base else 0
        if self.frame < 0 or abs(due - self.frame) > self.fps:
            self.frame = max(self.frame, 0)
            self.base = now - self.frame * Gst.SECOND // self.fps  # the next frame is due now
            due = self.frame + 1
        while self.frame < due:
            buffer = Gst.Buffer.new_wrapped(self.units[self.unit])
            buffer.pts = buffer.dts = self.at(self.frame)
            buffer.duration = self.at(self.frame + 1) - buffer.pts
            self.appsrc.emit("push-buffer", buffer)  # refused only while flushing: a frame skipped
            self.frame += 1
            self.unit = (self.unit + 1) % len(self.units)
        return True


def audio_branch(codec: str) -> str:
    """A live tone → AAC (48 kHz) or G.711 A-law/µ-law (8 kHz mono, as IP cameras send it) → RTP."""
    tone = "audiotestsrc is-live=true wave=sine freq=440 ! audioconvert ! audioresample"
    if codec == "aac":
        aac = "voaacenc bitrate=64000 ! rtpmp4apay name=pay1 pt=97"
        return f"{tone} ! audio/x-raw,rate=48000,channels=1 ! {aac}"
    if codec == "alaw":
        return f"{tone} ! audio/x-raw,rate=8000,channels=1 ! alawenc ! rtppcmapay name=pay1 pt=8"
    if codec == "mulaw":
        return f"{tone} ! audio/x-raw,rate=8000,channels=1 ! mulawenc ! rtppcmupay name=pay1 pt=0"
    return ""


def launch_line(
    width: int,
    height: int,
    fps: int,
    gop_frames: int,
    video: str = "h264",
    audio: str = "none",
    slices: int = 1,
    looped: bool = False,
) -> str:
    """The media pipeline of one camera, as gst-launch syntax."""
    picture = (
        looped_video_branch(width, height, fps)
        if looped
        else video_branch(video, width, height, fps, gop_frames, slices)
    )
    branches = [picture, audio_branch(audio)]
    return "( " + " ".join(b for b in branches if b) + " )"


def camera_priority() -> None:
    """Run ahead of the box under test where allowed (nice -10): a camera is a device of its own, so a test
    whose machine is busy must not see it drop seconds of video (a live source's frames are dropped, not
    delayed, when its encoder falls behind) and blame the box. Without the privilege, as it was."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, -10)


def main() -> None:
    camera_priority()  # before GStreamer starts its threads, which inherit it
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/cam")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--gop-frames", type=int, default=15)
    parser.add_argument("--video", choices=VIDEO_CODECS, default="h264")
    parser.add_argument("--audio", choices=AUDIO_CODECS, default="none")
    parser.add_argument("--slices", type=int, default=1)
    parser.add_argument("--loop-seconds", type=float, default=0.0, help="send a pre-encoded loop (H.264)")
    parser.add_argument("--user", help="require HTTP basic authentication with this user …")
    parser.add_argument("--password", default="", help="… and this password")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    looped = args.loop_seconds > 0
    if looped and args.video != "h264":
        raise SystemExit("--loop-seconds sends H.264 only")
    factory.set_launch(
        launch_line(
            args.width, args.height, args.fps, args.gop_frames, args.video, args.audio, args.slices, looped
        )
    )
    if looped:
        units = prerecord(args.width, args.height, args.fps, args.gop_frames, args.loop_seconds)

        def configure(_factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
            Feeder(media, units, args.fps)  # lives as long as its timer: until the media is unprepared

        factory.connect("media-configure", configure)
    factory.set_shared(True)
    if args.user:
        # Like a real camera: 401 without the right credentials.
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_role_from_structure(
            Gst.Structure.new_from_string(
                "viewer, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
            )
        )
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        raise SystemExit(f"cannot listen on 127.0.0.1:{args.port}")
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"ready {server.get_bound_port()}", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
