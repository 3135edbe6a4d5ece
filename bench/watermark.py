#!/usr/bin/env python3
"""Watermark benchmark: ffmpeg engine vs MoviePy engine vs a plain re-encode (the floor).

One generated clip (default 50 s 1280x720 30 fps, H.264 + AAC), each case at presets ultrafast and
medium, each case in its own child process so wall time, CPU time (user+sys of the child and its
ffmpeg children, from rusage) and peak RSS are its own. Prints a table and the ratios:
target ffmpeg ≥ 8x faster than MoviePy at ultrafast, and ≤ 1.15x the plain re-encode.

    bench/watermark.py            # the full run (several minutes on 2 cores: MoviePy is slow)
    bench/watermark.py --quick    # 10 s 640x360 clip
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.media import make_clip  # noqa: E402


def run_case(engine: str, preset: str, overlay: bool, src: str, dst: str, logo: str) -> None:
    """Child mode: one render through the project's engine code."""
    from common.ffmpeg import probe
    from common.watermark import Watermark
    from worker import engines

    info = probe(Path(src))
    job = engines.RenderJob(
        src=Path(src), dst=Path(dst), wm=Watermark(Path(logo)), width=info.width, height=info.height,
        duration=info.duration_sec, fps=info.fps, crf=20, preset=preset, overlay=overlay,
    )  # fmt: skip
    engines.get(engine).render(job)
    # Peak memory of this case alone: the largest of this process and its ffmpeg children.
    peak = max(resource.getrusage(r).ru_maxrss for r in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    Path(dst + ".rss").write_text(str(peak))


def measure(args: list[str]) -> dict[str, float]:
    """Wall, CPU (user+sys of the child tree) and peak RSS of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(args, check=True, cwd=REPO)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rss_file = Path(args[-2] + ".rss")
    rss = int(rss_file.read_text()) / 1024 if rss_file.exists() else float("nan")
    return {"wall": wall, "cpu": cpu, "maxrss_mib": rss}


def psnr(a: Path, b: Path) -> float:
    """Average PSNR (dB) of two videos."""
    err = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-i", str(a), "-i", str(b), "-lavfi", "psnr",
         "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    ).stderr  # fmt: skip
    for part in err.split():
        if part.startswith("average:"):
            return float(part.split(":")[1])
    return float("nan")


def main() -> int:
    """Run every case and print the table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="10 s 640x360 clip instead of 50 s 1280x720")
    p.add_argument("--seconds", type=int, default=None)
    p.add_argument("--size", default=None)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--presets", default="ultrafast,medium")
    p.add_argument("--no-moviepy", action="store_true", help="skip the (slow) MoviePy cases")
    p.add_argument("--json", action="store_true", help="also print the raw numbers as JSON")
    p.add_argument("--case", nargs=6, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.case:
        engine, preset, overlay, src, dst, logo = a.case
        run_case(engine, preset, overlay == "1", src, dst, logo)
        return 0
    seconds = a.seconds or (10 if a.quick else 50)
    size = a.size or ("640x360" if a.quick else "1280x720")
    engines_ = ["floor", "ffmpeg"] + ([] if a.no_moviepy else ["moviepy"])
    if "moviepy" in engines_:
        try:
            import moviepy  # noqa: F401
        except ImportError:
            print("moviepy is not installed: its cases are skipped", file=sys.stderr)
            engines_.remove("moviepy")
    with tempfile.TemporaryDirectory(prefix="gn-bench-wm-") as tmp_s:
        tmp = Path(tmp_s)
        src = tmp / "clip.mp4"
        print(f"generating {seconds} s {size} {a.fps} fps clip …", file=sys.stderr)
        make_clip(src, seconds, size, a.fps, crf=20)
        logo = REPO / "assets" / "logo.png"
        results: dict[tuple[str, str], dict[str, float]] = {}
        for preset in a.presets.split(","):
            for name in engines_:
                dst = tmp / f"{name}-{preset}.mp4"
                engine = "ffmpeg" if name == "floor" else name
                overlay = "0" if name == "floor" else "1"
                print(f"  {name:8s} {preset:9s} …", file=sys.stderr, flush=True)
                cmd = [
                    sys.executable,
                    __file__,
                    "--case",
                    engine,
                    preset,
                    overlay,
                    str(src),
                    str(dst),
                    str(logo),
                ]
                results[(name, preset)] = measure(cmd)
                if name == "moviepy":
                    results[(name, preset)]["psnr_vs_ffmpeg"] = psnr(tmp / f"ffmpeg-{preset}.mp4", dst)
        print(f"\nclip: {seconds} s {size} {a.fps} fps; logo {logo.name}; crf 20; times in seconds")
        print(f"{'case':10s} {'preset':10s} {'wall':>8s} {'cpu':>8s} {'rss MiB':>8s} {'PSNR dB':>8s}")
        for (name, preset), r in results.items():
            ps = f"{r['psnr_vs_ffmpeg']:.1f}" if "psnr_vs_ffmpeg" in r else ""
            print(f"{name:10s} {preset:10s} {r['wall']:8.2f} {r['cpu']:8.2f} {r['maxrss_mib']:8.0f} {ps:>8s}")
        print("\nratios (wall / cpu)")
        for preset in a.presets.split(","):
            f, fl = results[("ffmpeg", preset)], results[("floor", preset)]
            line = f"  {preset:10s} ffmpeg/floor {f['wall'] / fl['wall']:.2f} / {f['cpu'] / fl['cpu']:.2f}"
            line += "  (target ≤ 1.15)"
            if ("moviepy", preset) in results:
                m = results[("moviepy", preset)]
                line += f"   moviepy/ffmpeg {m['wall'] / f['wall']:.1f}x / {m['cpu'] / f['cpu']:.1f}x"
                line += "  (target ≥ 8 at ultrafast)" if preset == "ultrafast" else ""
            print(line)
        if a.json:
            print(json.dumps({f"{n}/{pr}": r for (n, pr), r in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
