#!/usr/bin/env python3
"""Upload PUT: peak memory of the streamed body vs reading the file whole, and the bandwidth limit.

A file of --mb MiB is PUT to the test backend's pre-signed URL (harness/backend_server.py, run in its
own process on 127.0.0.1 so its copy of the bytes is not counted) by a fresh child process each time:
(a) `worker.backend.BackendClient.put` with `worker.upload.StreamBody` (what the upload job does),
(b) the same session with `data=f.read()`, (c) StreamBody limited to --kbps. Peak RSS is the child's
ru_maxrss. Prints a table with the ratios. Takes well under a minute.

    bench/upload_stream.py [--mb 200] [--kbps 40000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from deploy.checkout import run_in_venv  # noqa: E402

run_in_venv(__file__)  # the project's venv (the README's setup) has the dependencies

SERVER = """
import sys, time
from harness.backend_server import BackendServer
with BackendServer("s", "bench", "c", "v") as srv:
    clip = "bench-clip"
    from harness.backend_server import Clip
    srv.clips[clip] = Clip(clip, {})
    print(srv.presign(clip, int(time.time() + 3600)), flush=True)
    sys.stdin.read()
"""

CLIENT = """
import hashlib, json, resource, sys, time
from common.settings import load_settings
from worker.backend import BackendClient
from worker.upload import StreamBody
url, path, mode, kbps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s = load_settings({"device_id": "bench", "api_base": "http://127.0.0.1:9"}, env_file=None)
client = BackendClient(s)
size = __import__("os").path.getsize(path)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.monotonic()
with open(path, "rb") as fh:
    if mode == "whole":
        data = fh.read()
        ans = client.session.put(url, data=data, headers={"Content-Type": "video/mp4"}, timeout=600)
        etag = ans.headers.get("ETag", "").strip('"') == hashlib.md5(data).hexdigest()
        ok = ans.status_code == 200
    else:
        body = StreamBody(fh, size, kbps * 1000 / 8, 3600)
        ans = client.put(url, body, 600)
        ok, etag = ans.status == 200, ans.etag.strip('"') == body.md5.hexdigest()
secs = time.monotonic() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"ok": ok and etag, "secs": secs, "peak_mb": peak / 1024, "before_mb": base / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=200, help="file size in MiB")
    ap.add_argument("--kbps", type=int, default=40000, help="limit for the throttled run, kbit/s")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        with open(path, "wb") as fh:
            for _ in range(args.mb):
                fh.write(os.urandom(1 << 20))
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        assert server.stdin is not None and server.stdout is not None
        try:
            url = server.stdout.readline().strip()
            rows = {}
            for name, mode, kbps in (
                ("streamed", "stream", 0),
                ("read whole", "whole", 0),
                (f"streamed {args.kbps} kbit/s", "stream", args.kbps),
            ):
                out = subprocess.run(
                    [sys.executable, "-c", CLIENT, url, str(path), mode, str(kbps)],
                    capture_output=True,
                    text=True,
                    env=env,
                    check=True,
                ).stdout
                rows[name] = json.loads(out.strip().splitlines()[-1])
        finally:
            server.stdin.close()
            server.wait(10)
    size_mb = args.mb * 1.048576
    print(f"file: {args.mb} MiB ({size_mb:.1f} MB)")
    print(f"{'PUT':<28} {'ok':<4} {'peak RSS MiB':>12} {'growth MiB':>11} {'MB/s':>8} {'Mbit/s':>8}")
    for name, r in rows.items():
        rate = size_mb / r["secs"]
        growth = r["peak_mb"] - r["before_mb"]
        print(
            f"{name:<28} {r['ok']!s:<4} {r['peak_mb']:>12.1f} {growth:>11.1f} {rate:>8.1f} {rate * 8:>8.1f}"
        )
    s, w = rows["streamed"], rows["read whole"]
    t = rows[f"streamed {args.kbps} kbit/s"]
    print(f"ratio peak RSS read-whole / streamed: {w['peak_mb'] / s['peak_mb']:.2f}")
    print(f"ratio achieved / limit (throttled):   {size_mb * 8 / t['secs'] / (args.kbps / 1000):.3f}")


if __name__ == "__main__":
    main()
