"""The releases of an installed box: each one a venv built from its lock and wheel, and the links to them.

    /opt/gravanois/                     the install root (deploy/install.sh makes it)
      releases/0.2.0-3f2a9c1d0b7e/      a release: a venv (bin/, lib/) with exactly its lock and its wheel
        RELEASE                         written last, so a release without it is unfinished, never used
      current -> releases/0.2.0-…       what the box runs (systemd: current/bin/python -m deploy.supervise)
      previous -> releases/0.1.0-…      where `gravanois update --rollback` goes back to
      update.state                      the update under way (see State); boot.sh reads it at every start
      update.lock                       one update at a time

A release's id is its version and a digest of its wheel's RECORD (the hash of every file in it), so the
same source always makes the same id and a rebuilt wheel is recognised as already installed.

This module needs the standard library only (and common.version, common.fsutil): deploy/install.sh runs
it with the system's Python from a checkout, before any venv exists (`python3 -m deploy.release install`).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from common.fsutil import fsync_dir, write_bytes_atomic
from common.version import DISTRIBUTION as PROJECT
from common.version import RELEASE_FILE, release_dir

DEFAULT_ROOT = Path("/opt/gravanois")
# The box's Python (Debian 12 / Raspberry Pi OS Bookworm: 3.11); every release's venv is made with it.
DEFAULT_PYTHON = "/usr/bin/python3"
STATE_FILE = "update.state"
LOCK_IN_WHEEL = "deploy/requirements/box.txt"
# The project's top-level packages: a release's check imports every module of them.
PACKAGES = ("common", "recorder", "trigger", "worker", "ops", "deploy", "assets")
# Seconds a pip or venv step of an install may take (a slow SD card, a slow mirror).
PIP_TIMEOUT = 1200


class ReleaseError(Exception):
    """A release could not be fetched, installed or checked: one sentence for the operator."""


@dataclass(frozen=True)
class Release:
    """A complete release on disk."""

    id: str
    path: Path
    version: str

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"


class State:
    """The update under way, in `update.state`: `key=value` lines, so that boot.sh (plain sh) reads it.

    phase: trial (the link names the new release; not yet proven), rolling_back, committed, rolled_back.
    from / to: release ids. A box that starts while the phase is trial or rolling_back goes back to
    `from` (boot.sh): an update that did not finish its health watch is never kept by accident.
    """

    UNFINISHED = ("trial", "rolling_back")

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, str]:
        """The fields, empty when no update ever ran."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    def write(self, **fields: str) -> None:
        """Replace the state atomically (a power cut leaves the old or the new one)."""
        for value in fields.values():
            if "\n" in value:
                raise ValueError("state values are single lines")
        text = "".join(f"{k}={v}\n" for k, v in fields.items())
        write_bytes_atomic(self.path, text.encode())

    def unfinished(self) -> dict[str, str] | None:
        """The state of an update that stopped half-way (its updater killed, a power cut), else None."""
        state = self.read()
        return state if state.get("phase") in self.UNFINISHED else None


class Layout:
    """The folders and links of an install root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.releases = root / "releases"
        self.state = State(root / STATE_FILE)

    @classmethod
    def running(cls) -> Layout | None:
        """The layout this Python runs from, when it is a release of an installed box."""
        release = release_dir()
        return cls(release.parent.parent) if release else None

    def link(self, name: str) -> str | None:
        """The release id a link (`current`, `previous`) names, or None."""
        try:
            return Path(os.readlink(self.root / name)).name
        except OSError:
            return None

    def point(self, name: str, release_id: str) -> None:
        """Make link `name` name a release, atomically (rename over the old link), durably."""
        if not self.complete(release_id):
            raise ReleaseError(f"release {release_id} is not complete: refusing to run it")
        tmp = self.root / f".{name}.tmp-{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(Path("releases") / release_id)
        os.replace(tmp, self.root / name)
        fsync_dir(self.root)

    def path(self, release_id: str) -> Path:
        return self.releases / release_id

    def complete(self, release_id: str) -> bool:
        return bool(release_id) and (self.path(release_id) / RELEASE_FILE).is_file()

    def release(self, release_id: str) -> Release:
        """A complete release by id."""
        info = json.loads((self.path(release_id) / RELEASE_FILE).read_text(encoding="utf-8"))
        return Release(release_id, self.path(release_id), info["version"])

    def installed(self) -> list[str]:
        """Ids of the complete releases, oldest first."""
        if not self.releases.is_dir():
            return []
        done = [p for p in self.releases.iterdir() if (p / RELEASE_FILE).is_file()]
        return [p.name for p in sorted(done, key=lambda p: (p / RELEASE_FILE).stat().st_mtime)]

    def remove_unfinished(self) -> list[str]:
        """Delete release folders an interrupted install left without their RELEASE file."""
        gone = []
        if self.releases.is_dir():
            for p in self.releases.iterdir():
                if not (p / RELEASE_FILE).is_file():
                    shutil.rmtree(p, ignore_errors=True)
                    gone.append(p.name)
        return gone

    def prune(self, keep: set[str]) -> list[str]:
        """Delete complete releases not in `keep` (current, previous and any still running)."""
        gone = [r for r in self.installed() if r not in keep]
        for release_id in gone:
            shutil.rmtree(self.path(release_id), ignore_errors=True)
        return gone

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the update lock; a second updater is told so at once instead of waiting."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "update.lock", "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ReleaseError("another update is running on this box: wait for it to finish") from None
            yield


# ---------------------------------------------------------------- wheels


def wheel_identity(wheel: Path) -> tuple[str, str]:
    """(version, release id) of a project wheel; ReleaseError when it is not one."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = zf.namelist()
            info = next((n for n in names if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)), None)
            record = next((n for n in names if re.fullmatch(r"[^/]+\.dist-info/RECORD", n)), None)
            if info is None or record is None or LOCK_IN_WHEEL not in names:
                raise ReleaseError(f"{wheel.name} is not a {PROJECT} wheel (no metadata or no lock in it)")
            meta = zf.read(info).decode()
            digest = hashlib.sha256(zf.read(record)).hexdigest()[:12]
    except (zipfile.BadZipFile, OSError) as exc:
        raise ReleaseError(f"{wheel} cannot be read as a wheel: {exc}") from None
    name = re.search(r"^Name: (.+)$", meta, re.M)
    version = re.search(r"^Version: (.+)$", meta, re.M)
    if not name or not version or name[1].strip().lower().replace("_", "-") != PROJECT:
        raise ReleaseError(f"{wheel.name} is not a {PROJECT} wheel")
    return version[1].strip(), f"{version[1].strip()}-{digest}"


def fetch(source: str, work: Path, python: str = sys.executable) -> Path:
    """The wheel for `source`: a wheel file, a source folder (built here), or a version on the index."""
    path = Path(source)
    if path.is_file() and path.suffix == ".whl":
        return path
    if path.is_dir():
        if not (path / "pyproject.toml").is_file():
            raise ReleaseError(f"{source} is a folder without pyproject.toml: give a checkout of the project")
        return build_wheel(path, work, python)
    if re.fullmatch(r"(==)?[0-9][0-9A-Za-z.+!-]*", source):
        out = run_pip(
            python,
            [
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
                str(work),
                f"{PROJECT}=={source.lstrip('=')}",
            ],
            f"download {PROJECT} {source} from the package index",
        )
        del out
        found = sorted(work.glob("*.whl"))
        if not found:
            raise ReleaseError(f"the package index has no wheel of {PROJECT} {source}")
        return found[0]
    raise ReleaseError(f"{source!r} is neither a wheel, a project folder nor a version: give one of those")


def build_wheel(folder: Path, work: Path, python: str) -> Path:
    """Build the project's wheel from a source folder, with that folder's own locked setuptools.

    A throw-away venv holds the folder's lock (setuptools comes with it), so that building needs nothing
    from the network that is not locked and hashed.
    """
    lock = folder / "requirements" / "box.txt"
    if not lock.is_file():
        raise ReleaseError(f"{folder} has no requirements/box.txt: it is not a checkout of this project")
    builder = work / "build-venv"
    make_venv(python, builder)
    run_pip(
        str(builder / "bin" / "python"),
        ["install", "-q", "--no-deps", "--require-hashes", "-r", str(lock)],
        "install the build tools",
    )
    out = work / "wheel"
    run_pip(
        str(builder / "bin" / "python"),
        ["wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(folder)],
        f"build a wheel from {folder}",
    )
    [wheel] = out.glob("*.whl")
    return wheel


def make_venv(python: str, where: Path) -> None:
    done = subprocess.run(
        [python, "-m", "venv", str(where)], capture_output=True, text=True, timeout=PIP_TIMEOUT
    )
    if done.returncode != 0:
        raise ReleaseError(f"{python} could not make a venv ({last_line(done.stderr)}): install python3-venv")


def run_pip(python: str, args: list[str], what: str) -> str:
    """Run pip with the box's pip configuration; ReleaseError naming `what` when it fails."""
    done = subprocess.run(
        [python, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT,
    )
    if done.returncode != 0:
        raise ReleaseError(f"could not {what}: {last_line(done.stderr or done.stdout)}")
    return done.stdout


def last_line(text: str) -> str:
    """The last non-empty line of a tool's output (its error, usually)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("WARNING: Location")]
    return lines[-1][:300] if lines else "no output"


# ---------------------------------------------------------------- installing and checking


def install(layout: Layout, wheel: Path, python: str = DEFAULT_PYTHON) -> Release:
    """The release of `wheel`, installed beside the others (nothing to do if it is already complete).

    The venv is made at its final path (scripts name their interpreter by path), and RELEASE is written
    last: a power cut half-way leaves a folder without it, which is never run and is removed next time.
    """
    version, release_id = wheel_identity(wheel)
    if layout.complete(release_id):
        return layout.release(release_id)
    target = layout.path(release_id)
    shutil.rmtree(target, ignore_errors=True)
    layout.releases.mkdir(parents=True, exist_ok=True)
    make_venv(python, target)
    venv_python = str(target / "bin" / "python")
    with tempfile.TemporaryDirectory() as tmp:
        lock = Path(tmp) / "box.txt"
        with zipfile.ZipFile(wheel) as zf:
            lock.write_bytes(zf.read(LOCK_IN_WHEEL))
        run_pip(
            venv_python,
            ["install", "-q", "--no-deps", "--require-hashes", "-r", str(lock)],
            "install the release's locked packages",
        )
        lock_digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    run_pip(venv_python, ["install", "-q", "--no-deps", str(wheel)], f"install {wheel.name}")
    run_pip(venv_python, ["check"], "verify the release's packages (pip check)")
    info = {
        "id": release_id,
        "version": version,
        "wheel": wheel.name,
        "lock_sha256": lock_digest,
        "installed": time.time(),
    }
    write_bytes_atomic(target / RELEASE_FILE, (json.dumps(info, indent=2) + "\n").encode())
    return layout.release(release_id)


def check(release: Release, env_file: Path | None) -> str | None:
    """What is wrong with a release before it runs (None: nothing): every module imports, the command
    answers its version, and it accepts the box's settings."""
    imports = (
        "import importlib, pkgutil\n"
        f"for top in {PACKAGES!r}:\n"
        "    pkg = importlib.import_module(top)\n"
        "    for mod in pkgutil.walk_packages(pkg.__path__, top + '.'):\n"
        "        importlib.import_module(mod.name)\n"
    )
    env_args = ["--env-file", str(env_file)] if env_file else []
    steps = (
        ("its modules do not import", [str(release.python), "-c", imports]),
        ("`gravanois --version` fails", [str(release.path / "bin" / "gravanois"), "--version"]),
        ("it refuses the settings", [str(release.python), "-m", "deploy.supervise", *env_args, "check"]),
    )
    for what, cmd in steps:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=release.path)
        if done.returncode != 0:
            return f"{what}: {last_line(done.stderr or done.stdout)}"
    return None


# ---------------------------------------------------------------- the first install (deploy/install.sh)


def first_install(source: str, root: Path, python: str, env_file: Path | None) -> Release:
    """Install `source` as a release under `root` and make it current (if no update is under way)."""
    layout = Layout(root)
    with layout.locked(), tempfile.TemporaryDirectory() as tmp:
        layout.remove_unfinished()
        release = install(layout, fetch(source, Path(tmp), python), python)
        problem = check(release, env_file)
        if problem:
            raise ReleaseError(f"release {release.id} failed its check: {problem}")
        if layout.link("current") != release.id:
            layout.point("current", release.id)
        return release


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m deploy.release")
    sub = parser.add_subparsers(dest="command", required=True)
    first = sub.add_parser("install", help="install SOURCE as a release and make it current")
    first.add_argument("source", help="a wheel, a checkout folder, or a version on the package index")
    first.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    first.add_argument("--python", default=DEFAULT_PYTHON, help="the Python the release's venv is made with")
    first.add_argument("--env-file", type=Path, help="the box's settings, checked before the release is used")
    args = parser.parse_args(argv)
    try:
        release = first_install(args.source, args.root, args.python, args.env_file)
    except ReleaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(release.id)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
