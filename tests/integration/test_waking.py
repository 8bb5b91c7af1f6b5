"""The launcher wakes due sleepers that nothing launches with the wake command,
exactly once, watching the command like any launch."""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from runtara import clock, records
from runtara.launcher import launcher
from runtara.records import InstanceStatus, InstanceUpdate
from tests.support import ServerProcess, migrated_storage, script_environment, wait_for


@pytest.fixture
def storage(database_url):
    with migrated_storage(database_url, workers=8) as driver:
        yield driver


def sleeper(storage, instance_id, wakes_at, checkpoint_id="cp-1", status=InstanceStatus.SUSPENDED):
    def setup(tx):
        tx.create_instance(instance_id, "acme", wakes_at)
        tx.update_instance(
            instance_id,
            InstanceUpdate(status=status, sleep_until=wakes_at, checkpoint_id=checkpoint_id),
        )

    storage.run(setup)


def ago(seconds: float) -> dt.datetime:
    return clock.utc_now() - dt.timedelta(seconds=seconds)


def recorder(folder: Path, exit_code: int | None = None) -> tuple[str, Path]:
    """A wake command that appends what it was given to a file, one line per launch,
    then exits with ``exit_code`` (None: runs on, as an instance would)."""
    log = folder / "launches.txt"
    script = folder / "record.py"
    names = (
        "RUNTARA_INSTANCE_ID",
        "RUNTARA_TENANT_ID",
        "RUNTARA_SERVER_ADDR",
        "RUNTARA_SKIP_CERT_VERIFICATION",
        "RUNTARA_CHECKPOINT_ID",
        "RUNTARA_MANAGEMENT_TOKEN",
    )
    script.write_text(
        "import os, sys\n"
        f"with open({str(log)!r}, 'a') as out:\n"
        f"    out.write(' '.join(os.environ.get(k, '-') for k in {names!r}) + '\\n')\n"
        + ("import time; time.sleep(30)\n" if exit_code is None else f"sys.exit({exit_code})\n")
    )
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}", log


def waker(storage, folder: Path, command: str, **settings) -> launcher.Launcher:
    return launcher.Launcher(
        storage,
        launcher.Settings(
            server_addr="127.0.0.1:8001",
            skip_cert_verification=True,
            runs_dir=folder / "runs",
            wake_command=command,
            backoff=0.05,
            backoff_cap=0.1,
            **settings,
        ),
    )


def killed(runner: launcher.Launcher) -> None:
    for watched in runner._watched.values():
        os.killpg(watched.pid, signal.SIGKILL)
    runner.stop()


def launches(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def ticked_until(runner: launcher.Launcher, done, timeout: float = 20.0):
    def step():
        runner.tick()
        return done()

    return wait_for(step, timeout)


def test_due_sleepers_get_the_wake_command_oldest_first_with_their_environment(
    storage, tmp_path, monkeypatch
):
    monkeypatch.setenv("RUNTARA_MANAGEMENT_TOKEN", "the-server's-secret")
    command, log = recorder(tmp_path)
    sleeper(storage, "second", ago(60))
    sleeper(storage, "first", ago(120), checkpoint_id="sleep::nap")
    sleeper(storage, "not-yet", ago(-60))
    sleeper(storage, "within-grace", ago(1))
    sleeper(storage, "running", ago(60), status=InstanceStatus.RUNNING)
    sleeper(storage, "bare", ago(30), checkpoint_id=None)
    runner = waker(storage, tmp_path, command, wake_batch=1)
    try:
        ticked_until(runner, lambda: len(launches(log)) == 3)
    finally:
        killed(runner)
    assert launches(log) == [
        ["first", "acme", "127.0.0.1:8001", "true", "sleep::nap", "-"],
        ["second", "acme", "127.0.0.1:8001", "true", "cp-1", "-"],
        ["bare", "acme", "127.0.0.1:8001", "true", "-", "-"],
    ]
    for name in ("first", "second", "bare"):
        launch = storage.run(lambda tx, n=name: tx.get_launch(n))
        assert json.loads(launch.spec)["command"] == ["/bin/sh", "-c", command]
    for name in ("not-yet", "within-grace", "running"):
        assert storage.run(lambda tx, n=name: tx.get_launch(n)) is None


def test_a_failing_wake_command_follows_the_restart_policy(storage, tmp_path):
    command, log = recorder(tmp_path, exit_code=3)
    sleeper(storage, "stuck", ago(60))
    runner = waker(storage, tmp_path, command)

    def failed():
        return storage.run(lambda tx: tx.get_instance("stuck")).status is InstanceStatus.FAILED

    ticked_until(runner, failed)
    assert len(launches(log)) == 3
    stuck = storage.run(lambda tx: tx.get_instance("stuck"))
    assert stuck.error.startswith("gave up after 3 failed attempts in a row without progress")


def test_two_launchers_wake_each_due_sleeper_exactly_once(storage, tmp_path):
    for index in range(12):
        sleeper(storage, f"due-{index:02}", ago(100 - index))
    runners = [waker(storage, tmp_path, "sleep 30", wake_batch=3) for _ in range(2)]

    def tick(runner):
        for _ in range(10):
            runner.tick()

    threads = [threading.Thread(target=tick, args=(runner,)) for runner in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert sum(runner.launched for runner in runners) == 12
        for index in range(12):
            name = f"due-{index:02}"
            launch = storage.run(lambda tx, n=name: tx.get_launch(n))
            assert launch.attempt == 1 and launch.pid is not None
            launched = storage.run(
                lambda tx, n=name: tx.list_events(
                    n, records.EventFilter(event_type=records.EventType.LAUNCHED)
                )
            )
            assert len(launched) == 1
    finally:
        for runner in runners:
            killed(runner)


NAPPER = """
import os
from runtara import sdk

def note(text):
    with open(os.environ["TEST_LOG"], "a") as log:
        log.write(text + "\\n")

def workflow(instance):
    note("start " + os.environ.get("RUNTARA_CHECKPOINT_ID", "-"))
    instance.sleep(3, key="nap")
    note("woke")
    return "rested"

sdk.main(workflow)
"""


def test_a_durable_sleep_survives_a_killed_server_and_is_woken_by_the_restarted_one(tmp_path):
    script = tmp_path / "napper.py"
    script.write_text(NAPPER)
    log = tmp_path / "napper.log"
    database = tmp_path / "runtara.db"

    def row():
        with sqlite3.connect(database) as db:
            return db.execute(
                "SELECT status, sleep_until, output FROM instances WHERE instance_id = 'napper'"
            ).fetchone()

    first = ServerProcess(cwd=tmp_path)
    instance = subprocess.Popen(
        [sys.executable, str(script)],
        env=script_environment(first.address, "napper", RUNTARA_SERVER_WAIT="0", TEST_LOG=str(log)),
    )
    try:
        wait_for(lambda: (r := row()) is not None and r[0] == "suspended" and r[1], timeout=15)
        first.signal(signal.SIGKILL)
        first.wait()
        instance.kill()  # the instance process dies with its server
    finally:
        instance.wait()
    status, wake_time, _ = row()
    assert status == "suspended"  # durable: still asleep, wake time kept

    second = ServerProcess(
        "--wake-command",
        f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}",
        cwd=tmp_path,
        env={"TEST_LOG": str(log)},
    )
    try:
        wait_for(lambda: row()[0] == "completed", timeout=40)
    finally:
        second.signal()
        second.wait()
    status, sleep_until, output = row()
    assert output == b'"rested"' and sleep_until is None
    assert log.read_text().splitlines() == ["start -", "start sleep::nap", "woke"]
    assert any("waking it with the wake command" in line for line in second.log)
    with sqlite3.connect(database) as db:
        starts = [
            value
            for (value,) in db.execute(
                "SELECT created_at FROM instance_events WHERE instance_id = 'napper' "
                "AND event_type = 'started' ORDER BY id"
            )
        ]
    assert len(starts) == 2 and starts[1] >= wake_time  # relaunched only once due


def test_the_wake_command_needs_the_launcher(tmp_path):
    server = ServerProcess("--no-launcher", "--wake-command", "true", cwd=tmp_path)
    try:
        wait_for(lambda: any("--wake-command is not used" in line for line in server.log), 10)
    finally:
        server.signal()
        server.wait()


def test_events_record_the_wake(storage, tmp_path):
    command, _ = recorder(tmp_path, exit_code=0)
    sleeper(storage, "napper", ago(60))
    runner = waker(storage, tmp_path, command)

    def exited():
        kinds = [
            event.event_type
            for event in storage.run(lambda tx: tx.list_events("napper"), write=False)
        ]
        return records.EventType.EXITED in kinds

    ticked_until(runner, exited)
