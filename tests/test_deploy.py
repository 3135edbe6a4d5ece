"""The release layout, the update's state, boot.sh's fallback, the restart order and the update's verdict
on a backed-up queue, without a box."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from common.settings import load_settings
from deploy import release as rel
from deploy.control import Program, restart_order
from harness.repo import REPO, build_wheel, copy_checkout
from ops.attention import backlog
from ops.update import Health, Updater, without_numbers


def fake_release(layout: rel.Layout, release_id: str, complete: bool = True) -> None:
    """A release folder (complete: with its RELEASE file), enough for the links and boot.sh."""
    path = layout.path(release_id)
    (path / "bin").mkdir(parents=True)
    if complete:
        (path / rel.RELEASE_FILE).write_text(f'{{"id": "{release_id}", "version": "0"}}\n')


@pytest.fixture
def layout(tmp_path: Path) -> rel.Layout:
    lay = rel.Layout(tmp_path / "opt")
    for release_id in ("a", "b"):
        fake_release(lay, release_id)
    lay.point("current", "a")
    return lay


def boot(layout: rel.Layout) -> subprocess.CompletedProcess[str]:
    """deploy/boot.sh, as systemd's ExecStartPre runs it."""
    return subprocess.run(
        ["sh", str(REPO / "deploy" / "boot.sh"), str(layout.root)], capture_output=True, text=True, timeout=30
    )


def test_links_name_only_complete_releases(layout: rel.Layout) -> None:
    fake_release(layout, "half", complete=False)
    with pytest.raises(rel.ReleaseError, match="not complete"):
        layout.point("current", "half")
    assert layout.link("current") == "a"
    assert layout.remove_unfinished() == ["half"] and layout.installed() == ["a", "b"]
    layout.point("current", "b")
    assert layout.link("current") == "b" and not list(layout.root.glob(".current.tmp-*"))


def test_the_state_is_key_value_lines_replaced_whole(layout: rel.Layout) -> None:
    layout.state.write(phase="trial", **{"from": "a", "to": "b"})
    assert layout.state.read() == {"phase": "trial", "from": "a", "to": "b"}
    assert layout.state.unfinished() == {"phase": "trial", "from": "a", "to": "b"}
    layout.state.write(phase="committed", **{"from": "a", "to": "b"})
    assert layout.state.unfinished() is None
    with pytest.raises(ValueError):
        layout.state.write(reason="two\nlines")


def test_boot_undoes_a_trial_that_did_not_commit(layout: rel.Layout) -> None:
    layout.state.write(phase="trial", **{"from": "a", "to": "b"})
    layout.point("current", "b")
    done = boot(layout)
    assert done.returncode == 0, done.stderr
    assert layout.link("current") == "a"
    state = layout.state.read()
    assert state["phase"] == "rolled_back" and state["from"] == "a" and state["to"] == "b"
    assert "before the update to b had proven itself" in state["reason"]
    # Nothing more to do at the next start.
    assert boot(layout).returncode == 0 and layout.link("current") == "a"


def test_boot_lets_one_requested_start_of_a_trial_through(layout: rel.Layout) -> None:
    layout.state.write(phase="trial", restart="requested", **{"from": "a", "to": "b"})
    layout.point("current", "b")
    assert boot(layout).returncode == 0
    assert layout.link("current") == "b" and layout.state.read()["restart"] == "started"
    # A second start before the commit (a crash, a power cut) falls back.
    assert boot(layout).returncode == 0
    assert layout.link("current") == "a" and layout.state.read()["phase"] == "rolled_back"


def test_boot_keeps_a_committed_update_and_replaces_an_incomplete_current(layout: rel.Layout) -> None:
    layout.state.write(phase="committed", **{"from": "a", "to": "b"})
    layout.point("current", "b")
    layout.point("previous", "a")
    assert boot(layout).returncode == 0 and layout.link("current") == "b"
    (layout.path("b") / rel.RELEASE_FILE).unlink()  # as if its folder were damaged
    done = boot(layout)
    assert done.returncode == 0 and layout.link("current") == "a", done.stderr
    (layout.path("a") / rel.RELEASE_FILE).unlink()
    done = boot(layout)
    assert done.returncode == 1 and "run deploy/install.sh again" in done.stderr


def test_restart_order_keeps_a_worker_serving_and_the_trigger_last() -> None:
    def prog(group: str, name: str | None = None, state: str = "RUNNING") -> Program:
        return Program(group, name or group, state, 1, 0.0)

    programs = [
        prog("redis"),
        prog("recorder-cam2"),
        prog("recorder-cam1"),
        prog("trigger"),
        prog("worker", "worker-1"),
        prog("worker", "worker-0"),
        prog("web"),
        prog("scheduler"),
        prog("ahead"),
        prog("upload", "upload-0", state="STOPPED"),
        prog("agent"),
    ]
    batches = [[p.full_name for p in batch] for batch in restart_order(programs)]
    assert batches == [
        ["web:web", "scheduler:scheduler", "ahead:ahead", "agent:agent"],
        ["worker:worker-0"],
        ["worker:worker-1"],
        ["recorder-cam1:recorder-cam1"],
        ["recorder-cam2:recorder-cam2"],
        ["trigger:trigger"],
    ]


def test_a_release_id_is_the_same_for_the_same_source(tmp_path: Path) -> None:
    src = copy_checkout(tmp_path / "src")
    first = rel.wheel_identity(build_wheel(src, tmp_path / "one"))
    again = rel.wheel_identity(build_wheel(src, tmp_path / "two"))
    assert first == again and first[1].startswith(first[0] + "-")
    (src / "worker" / "__init__.py").write_text((src / "worker" / "__init__.py").read_text() + "# changed\n")
    assert rel.wheel_identity(build_wheel(src, tmp_path / "three"))[1] != first[1]


def test_the_watch_forgives_a_backlog_only_while_its_workers_work_it_down(
    tmp_path: Path, layout: rel.Layout
) -> None:
    # Presses go on while the programs restart: the render queue may be backed up when the watch looks.
    dirs = {"data_dir": tmp_path / "data", "buffer_dir": tmp_path / "buffer"}
    settings = load_settings(dirs, env_file=None)
    updater = Updater(settings, None, layout, watch=12, python="python3")
    updater.target = "a"
    before = Health(finished={"build": 30, "render": 28})

    def look(queued: int, built: int, rendered: int, *more: str) -> Health:
        said = {without_numbers(backlog("render", queued)), *more}
        return Health(attention=said, finished={"build": built, "render": rendered})

    first = look(24, 40, 30)
    backed_up = "status: render queue backed up: # jobs waiting"
    # Renders finished since the watch's first look: worked down, not a problem of the new release.
    assert updater.problem(before, look(26, 41, 31), first) is None
    # None finished (builds did, but they only feed the queue): the new release's renders are stuck.
    assert updater.problem(before, look(22, 45, 30), first) == backed_up
    # The watch's first look itself cannot tell yet.
    assert updater.problem(before, first, None) == backed_up
    # Any other new problem is still one.
    camera = "camera cam# is not recording (starting)"
    assert updater.problem(before, look(26, 41, 31, camera), first) == f"status: {camera}"
