"""Everything an instance's attempt started ends with it: when it is stopped, when
it ends by itself, after its server restarted; through a cgroup per attempt, or
through its process group and session when there is no cgroup."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from runtara import records
from runtara.launcher import cgroups, containment, logs, processes
from runtara.launcher.spec import LaunchSpec
from tests.integration.test_launcher import Launching
from tests.support import run_cli, sqlite_url, wait_for


def cgroup_parent() -> Path | None:
    try:
        return cgroups.own_parent()
    except cgroups.Unavailable:
        return None


PARENT = cgroup_parent()
needs_cgroups = pytest.mark.skipif(PARENT is None, reason="no cgroup v2 group can be made here")
MODES = [pytest.param("on", marks=needs_cgroups), "off"]
ALL_KINDS = {"on": "group,own-group,setsid,daemon", "off": "group,own-group,setsid"}
"""What each way catches when the attempt is stopped (without a cgroup, a daemon
that belongs to init escapes)."""


def read_pids(path: Path) -> dict[str, int]:
    return {
        kind: int(pid)
        for kind, pid in (line.split() for line in path.read_text().split("\n") if line)
    }


def alive(pids) -> list[int]:
    return [pid for pid in pids if processes.alive(pid, None)]


def attempt_groups(instance_id: str) -> list[str]:
    if PARENT is None:
        return []
    folder = logs.run_folder(Path("/"), instance_id).name
    return [name for name in os.listdir(PARENT) if name.startswith(f"runtara-{folder}-")]


@pytest.fixture
def private_parent():
    """A cgroup of this test's own under the launchers' parent: the servers that other
    tests run at the same time sweep the parent's orphaned groups (as launchers on one
    machine do), which would end what a test here left on purpose."""
    if PARENT is None:
        yield None
        return
    parent = PARENT / f"test-{uuid.uuid4().hex[:12]}"
    parent.mkdir()
    yield parent
    for group in parent.iterdir():
        if group.is_dir():
            signal_all_and_remove(group)
    wait_for(lambda: cgroups.remove(parent), 10)


def signal_all_and_remove(group: Path) -> None:
    cgroups.signal_all(group, signal.SIGKILL)
    wait_for(lambda: cgroups.remove(group), 10)


@pytest.fixture
def helpers(tmp_path):
    """The file the workflow writes its helpers' pids to; whatever a failed test left
    running is killed afterwards."""
    path = tmp_path / "pids.txt"
    yield path
    if path.exists():
        for pid in read_pids(path).values():
            if processes.alive(pid, None):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def launching(tmp_path, helpers, mode):
    """A launching server with ``--instance-cgroups mode``, stopped before ``helpers``
    kills what is left."""
    running = Launching(tmp_path / "server", sqlite_url(tmp_path), "--instance-cgroups", mode)
    yield running
    running.stop()


def stop(launching: Launching, instance_id: str) -> None:
    stopped = launching.cli("stop", instance_id, "--grace", "1s")
    assert stopped.returncode == 0, stopped.stderr
    assert launching.instance(instance_id).status is records.InstanceStatus.CANCELLED


@pytest.mark.parametrize("mode", MODES)
def test_stop_ends_the_instance_and_every_helper_it_started(launching, helpers, mode):
    how = "a cgroup of its own" if mode == "on" else "its process group and session"
    assert f"ends everything an attempt started through {how}" in launching.server.output()
    instance_id = launching.start(
        script="leaves_helpers.py", HELPERS=ALL_KINDS[mode], THEN="stay", PIDS=str(helpers)
    )
    wait_for(lambda: launching.instance(instance_id).checkpoint_id == "started", 30)
    pids = read_pids(helpers)
    assert len(alive(pids.values())) == len(pids) == len(ALL_KINDS[mode].split(","))
    if mode == "on":
        assert len(attempt_groups(instance_id)) == 1
    stop(launching, instance_id)
    wait_for(lambda: not alive(pids.values()), 10)
    wait_for(lambda: not attempt_groups(instance_id), 10)


@pytest.mark.parametrize("mode", MODES)
def test_the_helpers_of_an_instance_that_completes_end_with_it(launching, helpers, mode):
    # without a cgroup, a child in a session of its own is lost once the
    # workflow's process has exited
    kinds = "group,own-group,setsid,daemon" if mode == "on" else "group,own-group"
    instance_id = launching.start(
        script="leaves_helpers.py", HELPERS=kinds, THEN="finish", PIDS=str(helpers)
    )
    done = launching.finished(instance_id, 30)
    assert done.status is records.InstanceStatus.COMPLETED, done.error
    pids = read_pids(helpers)
    assert len(pids) == len(kinds.split(","))
    wait_for(lambda: not alive(pids.values()), 10)
    wait_for(lambda: not attempt_groups(instance_id), 10)
    said = f"ending {len(pids)} processes its attempt left running"
    wait_for(lambda: said in launching.server.output(), 10)  # the log may trail


@pytest.mark.parametrize("mode", MODES)
def test_a_restarted_server_stops_everything_an_adopted_attempt_started(launching, helpers, mode):
    instance_id = launching.start(
        script="leaves_helpers.py", HELPERS=ALL_KINDS[mode], THEN="stay", PIDS=str(helpers)
    )
    wait_for(lambda: launching.instance(instance_id).checkpoint_id == "started", 30)
    pids = read_pids(helpers)
    launching.restart(signal.SIGKILL)
    wait_for(lambda: "watching its running process" in launching.server.output(), 30)
    assert len(alive(pids.values())) == len(pids)
    stop(launching, instance_id)
    wait_for(lambda: not alive(pids.values()), 10)
    wait_for(lambda: not attempt_groups(instance_id), 10)


def test_instance_cgroups_takes_on_or_off_only(tmp_path):
    started = run_cli("--instance-cgroups", "maybe", "--runs-dir", str(tmp_path), cwd=tmp_path)
    assert started.returncode != 0
    assert "--instance-cgroups / RUNTARA_INSTANCE_CGROUPS: 'maybe' is not on or off" in (
        started.stderr
    )


# --- the parts, with real processes -------------------------------------------


def spawned(tmp_path: Path, command: str, parent: Path | None) -> processes.Attempt:
    spec = LaunchSpec(("sh", "-c", command))
    folder = logs.run_folder(tmp_path / "runs", "parts")
    return processes.spawn(spec, dict(os.environ), folder, "header", 1, parent)


@pytest.mark.parametrize("mode", MODES)
def test_what_ignores_sigterm_gets_sigkill_kill_after_later(tmp_path, mode, private_parent):
    # a shell that leaves behind a child deaf to SIGTERM (ignored signals are inherited)
    pid_file = tmp_path / "child.pid"
    parent = private_parent if mode == "on" else None
    attempt = spawned(tmp_path, f"trap '' TERM; sleep 1000 & echo $! > {pid_file}", parent)
    assert attempt.process.wait(10) == 0
    child = int(pid_file.read_text())
    try:
        assert (attempt.group is not None) == (mode == "on")
        members = containment.Members(attempt.pid, attempt.started, attempt.group)
        assert members.remaining() == [child]
        # kill_after far beyond the pause between the two ticks, however loaded the
        # machine: the second tick must find the deaf child alive and kept
        leftovers = containment.Leftovers(kill_after=2.0)
        leftovers.add("deaf", members, None)
        leftovers.tick()  # SIGTERM
        time.sleep(0.2)
        leftovers.tick()
        assert processes.alive(child, None) and len(leftovers) == 1
        wait_for(lambda: leftovers.tick() or not leftovers, 10)  # SIGKILL, then done
        assert not processes.alive(child, None)
        assert attempt.group is None or not attempt.group.exists()
    finally:
        if processes.alive(child, None):
            os.kill(child, signal.SIGKILL)


@needs_cgroups
def test_a_program_that_cannot_start_in_a_group_raises_its_os_error(tmp_path, private_parent):
    spec = LaunchSpec((str(tmp_path / "no-such-program"),))
    folder = logs.run_folder(tmp_path / "runs", "missing")
    with pytest.raises(FileNotFoundError) as raised:
        processes.spawn(spec, dict(os.environ), folder, "header", 1, private_parent)
    assert raised.value.filename == spec.command[0]
    assert (
        "cannot start: [Errno 2] No such file or directory" in (folder / "stderr.log").read_text()
    )
    assert not [
        name for name in os.listdir(private_parent) if name.startswith(f"runtara-{folder.name}-")
    ]


@needs_cgroups
def test_a_group_whose_main_process_is_gone_is_swept(private_parent):
    # named for a main process that runs (outside: as if about to be moved in), so
    # that no launcher sweeps it before it is filled
    main = subprocess.Popen(["sleep", "1000"])
    cgroups.join(private_parent, main.pid)  # waiting in the parent to be moved in
    group = cgroups.create(private_parent, cgroups.group_name("swept-test", 1, main.pid))
    left = subprocess.Popen(["sleep", "1000"])
    try:
        cgroups.join(group, left.pid)
        cgroups.sweep_orphans(private_parent)
        assert left.poll() is None
        main.kill()
        main.wait()
        cgroups.sweep_orphans(private_parent)
        assert left.wait(10) == -signal.SIGKILL
        cgroups.sweep_orphans(private_parent)
        assert not group.exists()
    finally:
        for process in (main, left):
            if process.poll() is None:
                process.kill()
                process.wait()
        cgroups.remove(group)


@needs_cgroups
def test_a_group_whose_main_process_runs_is_not_swept(private_parent):
    main = subprocess.Popen(["sleep", "1000"])
    group = cgroups.create(private_parent, cgroups.group_name("kept-test", 1, main.pid))
    try:
        cgroups.join(group, main.pid)
        cgroups.sweep_orphans(private_parent)
        assert main.poll() is None and group.exists()
    finally:
        main.kill()
        main.wait()
        wait_for(lambda: cgroups.remove(group), 10)


@needs_cgroups
def test_an_adopted_process_outside_its_attempts_group_is_not_given_one():
    main = subprocess.Popen(["sleep", "1000"])
    try:
        # the server's own group is not the attempt's: it must never be killed whole
        adopted = containment.Members.adopted(main.pid, None, "some-instance", 1)
        assert adopted.group is None
    finally:
        main.kill()
        main.wait()
