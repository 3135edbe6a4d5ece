#!/usr/bin/env python3
"""Web app benchmark: `gravanois web` against a plain static file server, and its cost to a render.

In one run, on loopback only, with a private redis-server and one finished highlight made by ffmpeg:

1. Throughput: N concurrent clients (default 20, keep-alive connections, one client process) for a few
   seconds per case, interleaved round by round: the court page from `gravanois web` vs the same page
   saved to a file and served by the static server; 64 KiB range reads at random offsets of the clip
   from `gravanois web` vs the same clip file from the static server. req/s, p50 and p95 latency, and
   the web/static ratios (medians over the rounds).
2. Memory: the web process's RSS idle (before any request) and after the load.
3. Interference: the wall time of a real render (the project's ffmpeg engine, watermark + x264) alone
   and while N clients hammer the web app (court page and range reads), interleaved; the ratio.

The static server is nginx (Debian's `nginx-light`: `apt-get install nginx-light`) when installed, since
it serves ranges like the web app; without it, Python's http.server, which ignores ranges, so the range
rows are then skipped. Both servers run at the web app's CPU priority (nice 19), so neither side is
favoured; the client process runs on idle CPU time only (SCHED_IDLE), as the players' phones are not on the
box; the render runs at normal priority, as the worker does.

    bench/web.py                        # defaults: 20 clients, 5 s per case, 3 rounds, 4 render rounds
    bench/web.py --clients 20 --seconds 5 --rounds 3 --render-seconds 20 --render-rounds 4
    bench/web.py --rounds 0                # the render interference only
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from deploy.checkout import run_in_venv  # noqa: E402

run_in_venv(__file__)  # the project's venv (the README's setup) has the dependencies

from common.proc import stop  # noqa: E402
from harness.media import make_clip  # noqa: E402
from harness.redis_server import free_port  # noqa: E402
from ops.web.cli import NICENESS  # noqa: E402

RANGE = 64 * 1024


def web_priority() -> list[str]:
    """Run a static server at the web app's own CPU priority: a fair comparison."""
    return ["nice", "-n", str(NICENESS)]


def wait_port(port: int, timeout: float = 30) -> None:
    """Until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def rss_mib(pid: int) -> float:
    """Resident memory of one process, MiB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, as text."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# ---------------------------------------------------------------- the client (a child process)


def client_main(port: int, path: str, clients: int, seconds: float, size: int) -> None:
    """Child mode: `clients` threads, back-to-back requests for `seconds`; prints one JSON line.

    It runs on idle CPU time only: the players' phones are not on the box, so the client's own work must
    not be what slows a render down (nice 19 where the idle class is refused).
    """
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(NICENESS)
    started = time.monotonic()
    stop_at = [started + seconds]
    # SIGTERM ends the run early (the render phase stops its clients when the render is done).
    signal.signal(signal.SIGTERM, lambda *_: stop_at.__setitem__(0, 0.0))
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def one() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        rnd = random.Random()
        mine: list[float] = []
        while time.monotonic() < stop_at[0]:
            headers = {}
            if size:
                start = rnd.randrange(0, max(1, size - RANGE))
                headers["Range"] = f"bytes={start}-{start + RANGE - 1}"
            t0 = time.perf_counter()
            try:
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                ok = resp.status == (206 if size else 200) and (not size or len(body) == RANGE)
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            if ok:
                mine.append(time.perf_counter() - t0)
            else:
                with lock:
                    errors[0] += 1
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    n = len(latencies)
    print(
        json.dumps(
            {
                "requests": n,
                "rps": n / elapsed,
                "p50": latencies[n // 2] * 1000 if n else None,
                "p95": latencies[min(n - 1, int(n * 0.95))] * 1000 if n else None,
                "errors": errors[0],
            }
        )
    )


def load(port: int, path: str, clients: int, seconds: float, size: int = 0) -> subprocess.Popen[str]:
    """Start one client process (returns at once; `.communicate()` gives its JSON line)."""
    args = [sys.executable, __file__, "--client", str(port), path, str(clients), str(seconds), str(size)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, text=True)


def measure(port: int, path: str, clients: int, seconds: float, size: int = 0) -> dict[str, Any]:
    """One client run to completion."""
    out, _ = load(port, path, clients, seconds, size).communicate(timeout=seconds + 120)
    result: dict[str, Any] = json.loads(out)
    return result


# ---------------------------------------------------------------- the servers


def start_nginx(root: Path, port: int, work: Path) -> subprocess.Popen[bytes] | None:
    """nginx serving `root` on loopback, one worker, in the foreground; None when nginx is missing."""
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if exe is None:
        return None
    work.mkdir(parents=True, exist_ok=True)
    conf = work / "nginx.conf"
    conf.write_text(
        f"""daemon off;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    types {{ text/html html; video/mp4 mp4; image/jpeg jpg; }}
    client_body_temp_path {work}/body; proxy_temp_path {work}/proxy; fastcgi_temp_path {work}/fcgi;
    uwsgi_temp_path {work}/uwsgi; scgi_temp_path {work}/scgi;
    sendfile on;
    server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
"""
    )
    return subprocess.Popen(
        [*web_priority(), exe, "-c", str(conf), "-p", str(work)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def start_http_server(root: Path, port: int) -> subprocess.Popen[bytes]:
    """Python's http.server (no ranges) serving `root` on loopback."""
    args = [*web_priority(), sys.executable, "-m", "http.server", str(port)]
    args += ["--bind", "127.0.0.1", "--directory", str(root)]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def render_once(src: Path, dst: Path) -> float:
    """Wall seconds of one watermark render through the project's ffmpeg engine."""
    from common.ffmpeg import probe
    from common.watermark import Watermark
    from worker import engines

    info = probe(src)
    job = engines.RenderJob(
        src=src, dst=dst, wm=Watermark(REPO / "assets" / "logo.png"), width=info.width, height=info.height,
        duration=info.duration_sec, fps=info.fps, crf=20, preset="ultrafast",
    )  # fmt: skip
    t0 = time.perf_counter()
    engines.get("ffmpeg").render(job)
    return time.perf_counter() - t0


# ---------------------------------------------------------------- main


def fmt(x: float | None, spec: str = ".1f") -> str:
    """A number for the table, or '-'."""
    return "-" if x is None else format(x, spec)


def main() -> None:
    """Parse the options, set everything up, run the cases, print the tables."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=5.0, help="seconds per throughput case")
    ap.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds of the throughput cases (0: none)"
    )
    ap.add_argument("--clip-seconds", type=int, default=20, help="length of the served clip")
    ap.add_argument("--render-seconds", type=int, default=20, help="length of the rendered clip (1280x720)")
    ap.add_argument("--render-rounds", type=int, default=4)
    ap.add_argument("--client", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        port, path, clients, seconds, size = args.client
        client_main(int(port), path, int(clients), float(seconds), int(size))
        return
    for tool in ("ffmpeg", "redis-server"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed: apt-get install {tool.replace('-server', '')}")

    import redis

    from common.settings import load_settings, to_env
    from harness.finished import finished_highlight

    print(f"load average at start: {loadavg()}  (cores: {os.cpu_count()})")
    tmp = Path(tempfile.mkdtemp(prefix="gn-bench-web-"))
    procs: list[subprocess.Popen[Any]] = []
    try:
        rport = free_port()
        procs.append(
            subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(rport),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                stdout=subprocess.DEVNULL,
            )
        )
        wait_port(rport)
        settings = load_settings(
            {
                "device_id": "bench-web",
                "data_dir": tmp / "data",
                "buffer_dir": tmp / "buffer",
                "redis_url": f"redis://127.0.0.1:{rport}/0",
                "log_format": "json",
            },
            env_file=None,
        )
        conn = redis.Redis.from_url(settings.redis_url)
        clip = finished_highlight(settings, conn, seconds=args.clip_seconds)
        for i in range(1, 12):  # a court page as on a busy evening: a dozen clips listed
            finished_highlight(settings, conn, at=time.time() - 300 * i, seconds=2)
        size = clip.video.stat().st_size

        wport = free_port()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("GN_")}, **to_env(settings)}
        env["PYTHONPATH"] = str(REPO)
        web = subprocess.Popen(
            [sys.executable, "-m", "common.cli", "--env-file", os.devnull, "web", "--bind", "127.0.0.1",
             "--port", str(wport)],
            env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        procs.append(web)
        wait_port(wport)
        time.sleep(1.0)
        idle_rss = rss_mib(web.pid)

        # the static copy: the court page as the web app renders it, and the very same clip file
        static_root = tmp / "static"
        static_root.mkdir()
        page = http.client.HTTPConnection("127.0.0.1", wport, timeout=10)
        page.request("GET", "/c/cam1")
        (static_root / "court.html").write_bytes(page.getresponse().read())
        page.close()
        os.link(clip.video, static_root / "clip.mp4")
        sport = free_port()
        static = start_nginx(static_root, sport, tmp / "nginx")
        static_name = "nginx"
        if static is None:
            static, static_name = start_http_server(static_root, sport), "python http.server"
        procs.append(static)
        wait_port(sport)

        cases = [("court page", "/c/cam1", "/court.html", 0)]
        if static_name == "nginx":
            cases.append(("range 64 KiB", f"/h/{clip.id}/video.mp4", "/clip.mp4", size))
        else:
            print("nginx not installed: range reads are not compared (python's http.server ignores ranges)")
        results: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in range(args.rounds):
            for case, web_path, static_path, sz in cases:
                order = [("web", wport, web_path), (static_name, sport, static_path)]
                if r % 2:
                    order.reverse()
                for name, port, path in order:
                    results.setdefault((case, name), []).append(
                        measure(port, path, args.clients, args.seconds, sz)
                    )
        loaded_rss = rss_mib(web.pid)

        print(
            f"\n{args.clients} concurrent clients, {args.seconds:g} s per case, "
            f"{args.rounds} interleaved rounds"
        )
        print(f"{'case':<14} {'server':<20} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'errors':>7}")
        for case, *_ in cases if args.rounds else []:
            row = {}
            for name in ("web", static_name):
                runs = results[(case, name)]
                rps = statistics.median(x["rps"] for x in runs)
                p50 = statistics.median(x["p50"] for x in runs if x["p50"] is not None)
                p95 = statistics.median(x["p95"] for x in runs if x["p95"] is not None)
                errors = sum(x["errors"] for x in runs)
                row[name] = (rps, p95)
                print(f"{case:<14} {name:<20} {rps:>8.0f} {p50:>8.1f} {p95:>8.1f} {errors:>7}")
            rps_ratio = row["web"][0] / row[static_name][0]
            p95_ratio = row["web"][1] / row[static_name][1]
            print(f"{case:<14} {'web / ' + static_name:<20} {rps_ratio:>8.2f} {'':>8} {p95_ratio:>8.2f}")

        print(f"\nweb process RSS: idle {idle_rss:.1f} MiB, after the load {loaded_rss:.1f} MiB")

        # render interference
        src = tmp / "render_src.mp4"
        make_clip(src, args.render_seconds, "1280x720")
        alone: list[float] = []
        loaded: list[float] = []
        during: list[dict[str, Any]] = []
        for r in range(args.render_rounds):
            for with_load in [False, True] if r % 2 == 0 else [True, False]:
                dst = tmp / f"render_{r}_{int(with_load)}.mp4"
                if not with_load:
                    alone.append(render_once(src, dst))
                    continue
                # half the clients on the court page, half reading the clip; they run past the render
                budget = 600.0
                half = max(1, args.clients // 2)
                pg = load(wport, "/c/cam1", half, budget)
                rg = load(wport, f"/h/{clip.id}/video.mp4", args.clients - half, budget, size)
                time.sleep(1.0)  # the clients are connected and busy
                loaded.append(render_once(src, dst))
                for p in (pg, rg):
                    p.send_signal(signal.SIGTERM)
                page_run, range_run = (json.loads(p.communicate(timeout=60)[0]) for p in (pg, rg))
                during.append({"page": page_run, "range": range_run})
        med_alone, med_loaded = statistics.median(alone), statistics.median(loaded)
        print(
            f"\nrender of a {args.render_seconds} s 1280x720 clip (ffmpeg engine, ultrafast), "
            f"{args.render_rounds} interleaved rounds"
        )
        print(f"{'render':<34} {'wall s (each)':<24} {'median':>8}")
        print(f"{'alone':<34} {' '.join(f'{x:.2f}' for x in alone):<24} {med_alone:>8.2f}")
        print(
            f"{f'with {args.clients} clients on the web app':<34} "
            f"{' '.join(f'{x:.2f}' for x in loaded):<24} {med_loaded:>8.2f}"
        )
        print(f"{'ratio (target <= 1.10)':<34} {'':<24} {med_loaded / med_alone:>8.2f}")
        for i, d in enumerate(during):
            print(
                f"  during loaded render {i + 1}: court page {d['page']['rps']:.0f} req/s "
                f"(p95 {fmt(d['page']['p95'])} ms), range reads {d['range']['rps']:.0f} req/s "
                f"(p95 {fmt(d['range']['p95'])} ms), errors {d['page']['errors'] + d['range']['errors']}"
            )
        print(f"\nload average at end: {loadavg()}")
    finally:
        for p in reversed(procs):
            stop(p, grace=15, first=signal.SIGTERM)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
