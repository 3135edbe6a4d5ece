"""Files: atomic writes, hashing, free space."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

TMP_MARK = ".tmp-"


def tmp_path_for(path: Path) -> Path:
    """A temp name beside `path` that readers and retention recognise as unfinished."""
    return path.with_name(f"{TMP_MARK}{os.getpid()}-{path.name}")


def is_tmp(path: Path) -> bool:
    """True for a file that a writer has not finished (left by a crash if its writer is gone)."""
    return path.name.startswith(TMP_MARK)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_MARK, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def write_json_atomic(path: Path, data: Any) -> None:
    """Atomically write `data` as pretty, UTF-8 JSON."""
    write_bytes_atomic(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode())


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temp path to write (e.g. by ffmpeg); on success it is renamed onto `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_for(path)
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def link_or_copy(src: Path, dst: Path) -> None:
    """Give `src` a second name `dst` (a hard link costs no copy on an SD card); copy where links cannot
    be made (another file system). FileNotFoundError when `src` is gone."""
    try:
        os.link(src, dst)
    except FileNotFoundError:
        raise
    except OSError:
        shutil.copyfile(src, dst)


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` survive a power cut."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def sha256_soon(path: Path) -> Callable[[], str]:
    """Start the SHA-256 of a finished file in a thread (hashlib lets go of the GIL while it hashes), so
    that other work (an ffmpeg run) overlaps it; calling the result waits for the digest."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256")
    future = pool.submit(sha256_file, path)
    pool.shutdown(wait=False)
    return future.result


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def free_mb(path: str | Path) -> float:
    """Free space in MiB on the disk holding `path` (or its nearest existing parent)."""
    # Asked about an existing folder once a second by each recorder: one statvfs (what shutil.disk_usage
    # does), no path handling in that case.
    p = path
    while True:
        try:
            st = os.statvfs(p)
            return st.f_bavail * st.f_frsize / (1 << 20)
        except (FileNotFoundError, NotADirectoryError):
            p = Path(p)
            if p == p.parent:
                raise
            p = p.parent


def read_json(path: Path) -> Any:
    """Parse a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
