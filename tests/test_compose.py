"""compose.yaml and the Dockerfile: validated by Docker Compose when it is installed, and always by parsing
them and checking that services, commands, volumes and files refer to things that exist."""

from __future__ import annotations

import re
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.repo import REPO, build_wheel, copy_checkout, gn_env, gravanois_cmd

BOX_SERVICES = ("recorder", "trigger", "scheduler", "ahead", "worker", "web")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    return data


def compose_tools() -> list[list[str]]:
    tools = []
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        tools.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        tools.append(["docker-compose"])
    return tools


@pytest.mark.parametrize(
    "tool", compose_tools() or [pytest.param(None, marks=pytest.mark.skip("no compose"))]
)
def test_docker_compose_accepts_the_file(tool: list[str], tmp_path: Path) -> None:
    # A copy with a .env made from .env.example, as the file's own instructions say.
    for name in ("compose.yaml", "Dockerfile"):
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / "deploy").mkdir()
    shutil.copy(REPO / "deploy" / "redis.conf", tmp_path / "deploy" / "redis.conf")
    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    res = subprocess.run([*tool, "config", "-q"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


def test_services_depend_on_a_healthy_redis(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= {"redis", *BOX_SERVICES}
    check = services["redis"]["healthcheck"]["test"]
    assert check[0] == "CMD" and check[1:] == ["redis-cli", "ping"]
    assert "appendonly" not in " ".join(services["redis"]["command"])  # from the shipped redis.conf
    mount = services["redis"]["volumes"][0].split(":")
    assert (REPO / mount[0]).resolve() == REPO / "deploy" / "redis.conf" and mount[1] in services["redis"][
        "command"
    ]
    for name in BOX_SERVICES:
        svc = services[name]
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy", name
        assert svc["environment"]["GN_REDIS_URL"].startswith("redis://redis:"), name
        assert svc["env_file"] == ".env", name


def test_commands_are_real_gravanois_commands(compose: dict[str, Any], settings: Any) -> None:
    for name in BOX_SERVICES:
        cmd = compose["services"][name]["command"]
        assert cmd[0] == "gravanois", name
        # click checks every option before --help, so an unknown flag or subcommand fails here.
        res = subprocess.run(
            gravanois_cmd(*cmd[1:], "--help"), env=gn_env(settings), capture_output=True, text=True, cwd=REPO
        )
        assert res.returncode == 0, f"{name}: {res.stderr}"


def test_volumes_and_buffer_on_tmpfs(compose: dict[str, Any]) -> None:
    declared = compose["volumes"]
    buffer = declared["buffer"]["driver_opts"]
    assert buffer["type"] == "tmpfs" and "size=" in buffer["o"]
    uid = re.search(r"uid=(\d+)", buffer["o"])
    dockerfile = (REPO / "Dockerfile").read_text()
    assert uid and f"--uid {uid[1]}" in dockerfile
    for name in BOX_SERVICES:
        svc = compose["services"][name]
        mounts = dict(v.split(":")[:2][::-1] for v in svc["volumes"])  # target -> source
        assert mounts[svc["environment"]["GN_BUFFER_DIR"]] == "buffer", name
        assert mounts[svc["environment"]["GN_DATA_DIR"]] == "data", name
        for source in mounts.values():
            assert source in declared or (REPO / source).exists(), source


def test_dockerfile_builds_from_what_exists(compose: dict[str, Any]) -> None:
    text = (REPO / "Dockerfile").read_text()
    assert text.count("FROM ") == 1 and "FROM python:3.11-slim-bookworm" in text
    assert re.search(r"apt-get install [^\n]*ffmpeg", text)
    for source in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for part in source.split():
            assert (REPO / part).exists(), part
    for name in BOX_SERVICES:
        assert compose["services"][name]["build"] == "."
    logo = re.search(r"GN_WM_LOGO=/app/(\S+)", text)
    assert logo and (REPO / logo[1]).is_file()
    # The settings the compose file relies on are documented for the .env it reads.
    example = (REPO / ".env.example").read_text()
    assert "GN_CAMERAS=" in example


def test_the_wheel_holds_every_package_and_the_release_files(tmp_path: Path) -> None:
    # The image and a release install the project non-editable: what the wheel lacks, they lack.
    # From a copy: an in-tree build leaves build/ behind, whose stale modules later wheels would take.
    wheel = build_wheel(copy_checkout(tmp_path / "src"), tmp_path / "wheel")
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {
        init.relative_to(REPO).as_posix()
        for top in ("common", "recorder", "trigger", "worker", "ops", "deploy", "assets")
        for init in (REPO / top).rglob("__init__.py")
    }
    assert packages <= names, sorted(packages - names)
    shipped = {
        "deploy/supervisord.conf",
        "deploy/redis.conf",
        "deploy/recorder.conf.in",
        "deploy/requirements/box.txt",
    }
    assert shipped <= names, sorted(shipped - names)
    # the web app's pages, scripts and language catalogs (read from the package when it starts)
    web = {
        p.relative_to(REPO).as_posix()
        for p in (REPO / "ops" / "web").rglob("*")
        if p.suffix in (".html", ".js", ".css", ".po")
    }
    assert any(n.endswith("/pt_BR/LC_MESSAGES/messages.po") for n in web)
    assert web <= names, sorted(web - names)
    assert not [n for n in names if n.startswith(("tests/", "bench/", "harness/"))]
