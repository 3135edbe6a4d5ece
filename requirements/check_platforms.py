#!/usr/bin/env python3
"""Check that every package a lock pins installs on the box's platforms, from wheels, with their hashes.

    python3 requirements/check_platforms.py requirements/box.txt

For each platform (CPython 3.11 on glibc 2.36, i.e. Debian 12 / Raspberry Pi OS Bookworm) it keeps the
lock's lines whose environment markers hold there, then has pip download exactly those, wheels only,
checked against the lock's hashes. It prints one table row per package with the wheel's platform tag,
and exits 1 if a package has no wheel for a platform (it would have to build from source on the box).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement


@dataclass(frozen=True)
class Platform:
    """A target machine: its name in the table, pip's platform tags, and its marker environment."""

    name: str
    machine: str

    def tags(self) -> list[str]:
        """Every manylinux tag glibc 2.36 accepts, newest first (pip does not expand one tag itself)."""
        tags = [f"manylinux_2_{minor}_{self.machine}" for minor in range(36, 16, -1)]
        return [*tags, f"manylinux2014_{self.machine}", f"linux_{self.machine}"]

    def environment(self) -> dict[str, str]:
        """PEP 508 marker values on that machine (Debian 12's Python is 3.11.2)."""
        return {
            "platform_machine": self.machine,
            "sys_platform": "linux",
            "os_name": "posix",
            "platform_system": "Linux",
            "platform_python_implementation": "CPython",
            "implementation_name": "cpython",
            "python_version": "3.11",
            "python_full_version": "3.11.2",
            "implementation_version": "3.11.2",
            "extra": "",
        }


PLATFORMS = (
    Platform("x86-64 (CI, laptops)", "x86_64"),
    Platform("64-bit Raspberry Pi OS", "aarch64"),
    Platform("32-bit Raspberry Pi OS", "armv7l"),
)


def entries(lock: Path) -> list[tuple[Requirement, str]]:
    """(requirement, its whole entry with hashes) for each package of a pip-style lock."""
    text = re.sub(r"\\\n", " ", lock.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", "-")):
            spec = re.split(r"\s--hash", line, maxsplit=1)[0]
            out.append((Requirement(spec), line))
    return out


def wheel_tag(name: str, files: list[str]) -> str:
    """The platform part of the downloaded wheel of `name` ('any' for pure Python)."""
    norm = re.sub(r"[-_.]+", "_", name).lower()
    for f in files:
        if re.sub(r"[-_.]+", "_", f).lower().startswith(norm + "_") and f.endswith(".whl"):
            tag = f[:-4].split("-")[-1]
            return "any" if tag == "any" else tag.split(".")[-1]
    return "?"


def check(lock: Path, platform: Platform) -> dict[str, str]:
    """Package → wheel tag (or 'not used' / 'NO WHEEL') on one platform."""
    env = platform.environment()
    wanted, result = [], {}
    for req, line in entries(lock):
        if req.marker is not None and not Marker(str(req.marker)).evaluate(env):
            result[req.name] = "not used"
        else:
            wanted.append((req, line))
    with tempfile.TemporaryDirectory() as tmp:
        for req, line in wanted:
            one = Path(tmp) / "one.txt"
            # The marker was judged above for the target: pip would judge it for this machine.
            one.write_text(line.split(";", 1)[0] + " " + " ".join(re.findall(r"--hash=\S+", line)) + "\n")
            cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
            cmd += [a for tag in platform.tags() for a in ("--platform", tag)]
            cmd += ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"]
            cmd += ["--require-hashes", "-r", str(one), "-d", tmp]
            done = subprocess.run(cmd, capture_output=True, text=True)
            files = [p.name for p in Path(tmp).iterdir()]
            result[req.name] = wheel_tag(req.name, files) if done.returncode == 0 else "NO WHEEL"
    return result


def main(argv: list[str]) -> int:
    lock = Path(argv[0] if argv else "requirements/box.txt")
    columns = {p.name: check(lock, p) for p in PLATFORMS}
    names = [req.name for req, _ in entries(lock)]
    print(f"| package ({lock}) | " + " | ".join(columns) + " |")
    print("| --- |" + " --- |" * len(columns))
    for name in names:
        print(f"| {name} | " + " | ".join(col[name] for col in columns.values()) + " |")
    missing = [f"{n} on {p}" for p, col in columns.items() for n in names if col[n] == "NO WHEEL"]
    if missing:
        print("no wheel (would build from source on the box): " + ", ".join(missing), file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
