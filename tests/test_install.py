"""Installing: the wheel in a fresh venv runs the demo from anywhere; deploy/install.sh makes a box of a
fresh Debian 12 root, idempotently, and uninstalls it keeping the highlights."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from common.ffmpeg import probe
from harness.redis_server import free_port
from harness.repo import build_wheel, copy_checkout
from tests.debian_root import DebianRoot, can_make_roots
from tests.helpers import wait_for


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_runs_the_demo_from_another_directory(tmp_path: Path) -> None:
    src = copy_checkout(tmp_path / "src")
    wheel = build_wheel(src, tmp_path / "wheels")
    venv = tmp_path / "v"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # As a box installs a release: exactly the box's lock, then the wheel without resolving anything.
    for args in (["--require-hashes", "-r", str(src / "requirements" / "box.txt")], [str(wheel)]):
        installed = subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", "--no-deps", *args],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert installed.returncode == 0, installed.stderr[-3000:]

    elsewhere = tmp_path / "elsewhere"  # no .env, no repository: nothing configured
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GN_", "PYTHON"))}
    out_dir = elsewhere / "out"
    res = subprocess.run(
        [str(venv / "bin" / "gravanois"), "demo", "--pre", "3", "--post", "2", "--data-dir", str(out_dir)],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    paths = dict(re.findall(r"^  (clip|thumbnail|sidecar)\s+(\S+)$", res.stdout, re.M))
    clip = Path(paths["clip"])
    assert clip.is_relative_to(out_dir) and probe(clip).codec == "h264"
    # The logo it used is the package's own, inside the venv, not the repository's.
    logo = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import assets; print(assets.default_logo())"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(logo).is_file() and Path(logo).is_relative_to(venv)


# ---------------------------------------------------------------- deploy/install.sh in a fresh Debian 12


def unit_value(unit: str, key: str) -> str:
    """A `Key=value` of the installed systemd unit."""
    found = re.search(rf"^{key}=(.*)$", unit, re.M)
    assert found, key
    return found[1]


def install_snapshot(root: DebianRoot) -> dict[str, str]:
    """What the installer owns, by path: file contents' digests, links' targets, owners and modes."""
    out = {}
    for top in ("etc/gravanois", "etc/systemd/system", "etc/udev/rules.d", "opt/gravanois", "usr/local/bin"):
        for path in sorted(root.file(top).rglob("*")):
            rel = str(path.relative_to(root.path))
            if "/releases/" in rel and rel.count("/") > 3:
                continue  # inside a release: its RELEASE file below stands for it
            st = path.lstat()
            what = (
                os.readlink(path) if path.is_symlink() else (path.read_bytes() if path.is_file() else b"dir")
            )
            out[rel] = f"{st.st_uid}:{st.st_gid}:{oct(st.st_mode)}:{hash(what)}"
    for name in ("etc/fstab", "etc/passwd", "etc/group"):
        out[name] = root.file(name).read_text()
    return out


@pytest.mark.slow
# A Debian root, then install.sh twice: 161 s alone here; in a fresh clone's whole suite, four tests at a
# time, it outlasted pytest's default 300 s in its second install (each command may take 900 s).
@pytest.mark.timeout(900)
@pytest.mark.skipif(bool(can_make_roots()), reason=can_make_roots() or "")
def test_install_sh_makes_a_box_in_a_fresh_debian_12_root(tmp_path: Path) -> None:
    root = DebianRoot(tmp_path / "deb12").create()
    copy_checkout(root.file("/root/gravanois"))
    with root.entered():
        first = root.run("./deploy/install.sh", cwd="/root/gravanois")
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        release = re.search(r"release (\S+) is current", first.stderr)
        assert release, first.stderr[-2000:]

        # Running it again changes nothing.
        before = install_snapshot(root)
        again = root.run("./deploy/install.sh", cwd="/root/gravanois")
        assert again.returncode == 0, again.stderr[-3000:]
        assert "nothing to change" in again.stderr, again.stderr[-2000:]
        assert install_snapshot(root) == before

        # What it set up: user and groups, the release behind `current`, the mounts, the unit.
        groups = root.run("id", "-nG", "gravanois").stdout.split()
        assert {"gravanois", "video", "gpio", "dialout"} <= set(groups)
        assert os.readlink(root.file("/opt/gravanois/current")) == f"releases/{release[1]}"
        version = root.run("/opt/gravanois/current/bin/gravanois", "--version")
        assert f"release {release[1]}" in version.stdout, version.stdout + version.stderr
        mounts = root.run("cat", "/proc/mounts").stdout  # the mounts live in the root's namespace
        assert re.search(r"^tmpfs /var/lib/gravanois/buffer tmpfs \S*size=262144k", mounts, re.M), mounts
        assert re.search(r"^proc /proc proc \S*hidepid=(2|invisible)", mounts, re.M), mounts
        assert root.file("/etc/udev/rules.d/70-gravanois-button.rules").is_file()
        unit = root.file("/etc/systemd/system/gravanois.service").read_text()
        assert unit_value(unit, "KillMode") == "control-group" and unit_value(unit, "User") == "gravanois"
        assert root.file("/etc/systemd/system/multi-user.target.wants/gravanois.service").is_symlink()
        verify = root.run("systemd-analyze", "verify", "--man=no", "/etc/systemd/system/gravanois.service")
        assert "gravanois.service" not in verify.stderr, verify.stderr

        # The box as systemd starts it (ExecStartPre, then ExecStart as the unit's user), on the synthetic
        # camera, with the operator's edits to the settings file.
        redis_port, web_port = free_port(), free_port()
        with root.file("/etc/gravanois/gravanois.env").open("a") as env:
            env.write(
                f"GN_REDIS_URL=redis://127.0.0.1:{redis_port}/0\nGN_WEB_BIND=127.0.0.1\nGN_WEB_PORT={web_port}\n"
                'GN_CAMERAS={"cam1": "testsrc:320x240@15"}\nGN_PRE_SECONDS=3\nGN_POST_SECONDS=2\n'
                "GN_TRIGGER_AUTOSTART=false\nGN_WORKERS=1\n"
            )
        as_user = ("runuser", "-u", unit_value(unit, "User"), "--")
        pre = root.run(*as_user, *unit_value(unit, "ExecStartPre").split())
        assert pre.returncode == 0, pre.stderr
        box = root.start(
            *as_user, *unit_value(unit, "ExecStart").split(), cwd=unit_value(unit, "WorkingDirectory")
        )
        try:

            def recording() -> bool:
                res = root.run("gravanois", "status", "--json", timeout=60)
                return res.returncode == 0 and json.loads(res.stdout)["cameras"][0]["recording"] is True

            wait_for("the installed box to record", recording, timeout=120, every=2)
            press = root.run("gravanois", "trigger", "press", "--camera", "cam1", "--wait", timeout=180)
            assert press.returncode == 0, press.stdout + press.stderr
            [sidecar] = root.file("/var/lib/gravanois/highlights").glob("highlight_cam1_*.json")
            meta = json.loads(sidecar.read_text())
            assert meta["status"] == "watermarked"
            assert sidecar.stat().st_uid == int(root.run("id", "-u", "gravanois").stdout)
        finally:
            pidfile = root.file("/var/lib/gravanois/run/supervisord.pid")
            if pidfile.is_file():  # ExecStop: supervisord's own ordered stop
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pidfile.read_text()), signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                box.wait(120)
            with contextlib.suppress(ProcessLookupError):  # KillMode=control-group: whatever is left
                os.killpg(box.pid, signal.SIGKILL)
            box.wait()

        # Uninstall keeps the highlights and the settings; --purge removes them.
        gone = root.run("/root/gravanois/deploy/install.sh", "--uninstall")
        assert gone.returncode == 0, gone.stderr
        assert not root.file("/opt/gravanois").exists()
        assert not root.file("/etc/systemd/system/gravanois.service").exists()
        assert "# gravanois" not in root.file("/etc/fstab").read_text()
        assert sidecar.is_file() and root.file("/etc/gravanois/gravanois.env").is_file()
        purged = root.run("/root/gravanois/deploy/install.sh", "--uninstall", "--purge")
        assert purged.returncode == 0, purged.stderr
        assert not root.file("/var/lib/gravanois").exists() and not root.file("/etc/gravanois").exists()
        assert root.run("id", "gravanois").returncode != 0
