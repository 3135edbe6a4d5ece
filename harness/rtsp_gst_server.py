"""A GStreamer RTSP server on loopback serving a live test camera: H.264 or H.265, AAC, G.711 or no audio.

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
) -> str:
    """The media pipeline of one camera, as gst-launch syntax."""
    branches = [video_branch(video, width, height, fps, gop_frames, slices), audio_branch(audio)]
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
    parser.add_argument("--user", help="require HTTP basic authentication with this user …")
    parser.add_argument("--password", default="", help="… and this password")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        launch_line(args.width, args.height, args.fps, args.gop_frames, args.video, args.audio, args.slices)
    )
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
