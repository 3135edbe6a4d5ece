"""Shared fixtures: a real redis-server per test session (per xdist worker), settings in tmp dirs."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from common.settings import Settings, load_settings
from harness.backend_server import BackendServer
from harness.media import make_video
from harness.redis_server import RedisServer
from recorder.health import Health
from tests.helpers import publish_health
from tests.upload_helpers import CLIENT, SECRET, TOKEN, VENUE


def pytest_report_header() -> str:
    """The versions under test (tests/test_lock.py checks that they are exactly the lock's)."""
    from importlib.metadata import version

    names = ("redis", "hiredis", "rq", "click", "supervisor", "starlette", "uvicorn", "gpiozero")
    return "locked: " + " ".join(f"{n}=={version(n)}" for n in names)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests marked `first` go first: each takes minutes and runs beside the others (the first item of
    xdist's first worker's share starts at once), so the suite does not wait for it at its end."""
    items.sort(key=lambda item: item.get_closest_marker("first") is None)  # stable: the rest keep order


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private redis-server for the session (each xdist worker has its own)."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone, which the test may stop and start."""
    server = RedisServer(data_dir=tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def redis_conn(redis_server: RedisServer) -> redis.Redis:
    """A client of the session's Redis (tests stay apart by their unique device id)."""
    return redis_server.client()


@pytest.fixture
def make_settings(tmp_path: Path, redis_server: RedisServer) -> Callable[..., Settings]:
    """Settings for this test: unique device id, data and buffer dirs under tmp_path, the test Redis."""
    device = f"test-{uuid.uuid4().hex[:10]}"

    def make(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "device_id": device,
            "data_dir": tmp_path / "data",
            "buffer_dir": tmp_path / "buffer",
            "redis_url": redis_server.url,
            "log_format": "json",
        }
        base.update(overrides)
        return load_settings(base, env_file=None)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Default test settings."""
    return make_settings()


@pytest.fixture(autouse=True)
def _clean_gn_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never inherit GN_* settings from the developer's shell."""
    for key in list(os.environ):
        if key.startswith("GN_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="module")
def highlight_media(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small finished clip and thumbnail, for upload tests that need no render."""
    d = tmp_path_factory.mktemp("media")
    video = make_video(d / "wm.mp4", seconds=2, fps=15)
    thumb = d / "thumb.jpg"
    thumb.write_bytes(b"\xff\xd8\xff\xe0 test thumbnail \xff\xd9")
    return video, thumb


@pytest.fixture
def backend(settings: Settings) -> Iterator[BackendServer]:
    """The local backend (harness/backend_server.py) on loopback, knowing this test's device."""
    with BackendServer(SECRET, settings.device_id, CLIENT, VENUE, token=TOKEN) as srv:
        yield srv


@pytest.fixture(name="recording")
def recording_fixture() -> Iterator[Callable[..., None]]:
    """`recording(settings, conn, *cameras)`: publish, as a recording recorder does every second (with
    the recorder's own Health code), until the test ends; so presses in tests without ffmpeg are taken."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(s: Settings, conn: redis.Redis, *cameras: str) -> None:
        reporters = [Health(conn, s, cam, "testsrc", "copy") for cam in cameras or ("cam1",)]

        def beat() -> None:
            while not stop.is_set():
                for h in reporters:
                    with contextlib.suppress(redis.RedisError):  # the test may stop its Redis
                        publish_health(h, time.time(), state="recording", last_segment_end=time.time())
                stop.wait(0.5)

        for h in reporters:  # the first report before the test presses
            publish_health(h, time.time(), state="recording", last_segment_end=time.time())
        threads.append(threading.Thread(target=beat, daemon=True))
        threads[-1].start()

    yield start
    stop.set()
    for t in threads:
        t.join(5)


@pytest.fixture
def mock_pins():
    """gpiozero's mock pin factory for the test (a button on pin 17 is `mock_pins.pin(17)`)."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    Device.pin_factory = MockFactory()
    yield Device.pin_factory
    Device.pin_factory.reset()
    Device.pin_factory = None
