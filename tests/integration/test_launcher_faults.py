"""The launcher when its writes fail or its claims are not what it watches: an
exit is never forgotten, a claim is renewed only for a process it watches."""

from __future__ import annotations

import datetime as dt
import os
import sys

import pytest

from runtara import clock, errors, records
from runtara.launcher import launcher
from runtara.launcher.spec import LaunchSpec
from runtara.storage import launches
from tests.support import LoopbackServer, migrated_storage, sqlite_url, wait_for


class FailingOnce:
    """The storage, but the next write transaction made in the function ``target`` fails."""

    def __init__(self, storage, target) -> None:
        self._storage = storage
        self._target = target
        self.armed = False

    def run(self, work, *, write=True):
        if self.armed and write and self._target in repr(work):
            self.armed = False
            raise errors.StorageError("Database error: disk I/O error (injected)")
        return self._storage.run(work, write=write)


@pytest.fixture
def storage(tmp_path):
    with migrated_storage(sqlite_url(tmp_path), workers=4) as driver:
        yield driver


def start(storage, instance_id: str, *command: str, max_failures: int = 3) -> None:
    spec = LaunchSpec(tuple(command), max_failures=max_failures).to_json()
    now = clock.utc_now()
    storage.run(
        lambda tx: launches.start_instance(tx, instance_id, "t", spec, None, max_failures, now)
    )


def settings(tmp_path, **changes) -> launcher.Settings:
    values = dict(
        server_addr="127.0.0.1:1",
        skip_cert_verification=True,
        runs_dir=tmp_path / "runs",
        backoff=0.05,
        backoff_cap=0.1,
    )
    return launcher.Settings(**{**values, **changes})


def ticking(runner, predicate, timeout=20.0):
    def step():
        runner.tick()
        return predicate()

    return wait_for(step, timeout)


def test_an_exit_whose_record_fails_is_recorded_at_the_next_tick(storage, tmp_path):
    failing = FailingOnce(storage, "_record_exit")
    runner = launcher.Launcher(failing, settings(tmp_path))
    start(
        storage, "short", sys.executable, "-c", "import time; time.sleep(0.3); raise SystemExit(7)"
    )
    ticking(runner, lambda: runner.running == 1)
    failing.armed = True
    # the process ends; its exit's record fails once, then is made
    ticking(runner, lambda: not failing.armed)
    assert runner.running == 1  # still watched: the exit is not forgotten
    exits = ticking(
        runner,
        lambda: storage.run(
            lambda tx: tx.list_events(
                "short", records.EventFilter(event_type=records.EventType.EXITED)
            )
        ),
    )
    assert b'"code": 7' in exits[-1].payload


def test_only_watched_claims_are_renewed(storage, tmp_path):
    runner = launcher.Launcher(storage, settings(tmp_path, lease=1.0))
    start(storage, "watched", "sleep", "30")
    ticking(runner, lambda: runner.running == 1)
    # a claim this launcher holds without a process (its spawn never happened)
    start(storage, "orphan", "sleep", "30")
    now = clock.utc_now()
    lease = dt.timedelta(seconds=1)
    ((orphan, _),) = storage.run(lambda tx: launches.claim(tx, runner.id, now, lease, 1))
    try:
        # renewals of the watched process do not keep the orphan's claim alive:
        # it lapses and, never started, is launched again (no failure counted)
        launched = ticking(
            runner,
            lambda: (
                (got := storage.run(lambda tx: tx.get_launch("orphan"))).pid is not None and got
            ),
        )
        assert launched.attempt == orphan.attempt + 1 and launched.failures == 0
        watched = storage.run(lambda tx: tx.get_launch("watched"))
        assert watched.claimed_until > clock.utc_now()  # renewed all along
    finally:
        for watched in runner._watched.values():
            watched.process.process.kill()
            watched.process.process.wait()
        runner.stop()


def test_an_instance_that_finished_while_no_launcher_watched_gets_its_end_recorded(
    storage, tmp_path
):
    first = launcher.Launcher(storage, settings(tmp_path, name="box:1"))
    start(storage, "quick", sys.executable, "-c", "import time; time.sleep(0.5)")
    ticking(first, lambda: first.running == 1)
    first.stop()  # its server stops; the process ends, the instance completes meanwhile
    storage.run(
        lambda tx: tx.update_instance(
            "quick",
            records.InstanceUpdate(
                status=records.InstanceStatus.COMPLETED, finished_at=clock.utc_now()
            ),
        )
    )
    wait_for(lambda: storage.run(lambda tx: tx.get_launch("quick")).pid is not None, 5)
    pid = storage.run(lambda tx: tx.get_launch("quick")).pid
    wait_for(lambda: not os.path.exists(f"/proc/{pid}") or _zombie(pid), 10)
    restarted = launcher.Launcher(storage, settings(tmp_path, name="box:1"))
    restarted.tick()
    launch = storage.run(lambda tx: tx.get_launch("quick"))
    assert (launch.claimed_by, launch.last_exit) == (None, "ended while no server watched it")
    exits = storage.run(
        lambda tx: tx.list_events("quick", records.EventFilter(event_type=records.EventType.EXITED))
    )
    assert len(exits) == 1 and b'"outcome": "finished"' in exits[0].payload


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


class Killed(BaseException):
    """The launcher's server dies: nothing after this point of its tick runs."""


def test_a_process_started_but_never_recorded_is_not_started_twice(tmp_path, monkeypatch):
    server = LoopbackServer(sqlite_url(tmp_path))
    effects = tmp_path / "effects.txt"
    workflow = os.path.join(os.path.dirname(__file__), "..", "workflows", "effects.py")
    environment = {"EFFECTS": str(effects), "STEPS": "8", "STEP_SECONDS": "0.2", "NAP_EVERY": "100"}
    spec = LaunchSpec((sys.executable, workflow), os.getcwd(), environment, 3).to_json()
    server.storage.run(
        lambda tx: launches.start_instance(tx, "x", "t", spec, None, 3, clock.utc_now())
    )
    host, port = server.address
    named = settings(tmp_path, server_addr=f"{host}:{port}", name="box:1", lease=1.0)

    def dies(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(launches, "launched", dies)
    first = launcher.Launcher(server.storage, named)
    with pytest.raises(Killed):
        first.tick()  # the process is spawned; its record is lost with the server
    (orphan,) = first._watched.values()
    monkeypatch.undo()
    restarted = launcher.Launcher(server.storage, named)
    try:
        ticking(restarted, lambda: instance_status(server, "x").is_terminal, timeout=30)
        assert instance_status(server, "x") is records.InstanceStatus.COMPLETED
        runs = [line.split() for line in effects.read_text().splitlines()]
        assert sorted(int(step) for _, step, _ in runs) == list(range(8))
        assert {pid for _, _, pid in runs} == {str(orphan.pid)}
    finally:
        for watched in [*first._watched.values(), *restarted._watched.values()]:
            _kill(watched.pid)
        server.stop()


def instance_status(server, instance_id):
    return server.storage.run(lambda tx: tx.get_instance(instance_id), write=False).status


def _kill(pid: int) -> None:
    try:
        os.killpg(pid, 9)
    except ProcessLookupError:
        pass
