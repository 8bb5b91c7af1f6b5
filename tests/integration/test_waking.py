"""The wake scheduler relaunches due sleepers exactly once, with back-off on failure."""

from __future__ import annotations

import datetime as dt
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from runtara import records
from runtara.admin.waking import WakeScheduler
from runtara.config import StorageConfig
from runtara.records import InstanceStatus, InstanceUpdate
from runtara.storage import selection
from tests.support import ServerProcess, wait_for

NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def storage(database_url):
    driver = selection.open_driver(StorageConfig(database_url=database_url), workers=8)
    driver.migrate()
    yield driver
    driver.close()


def sleeper(storage, instance_id, wakes_at, checkpoint_id="cp-1", status=InstanceStatus.SUSPENDED):
    def setup(tx):
        tx.create_instance(instance_id, "acme", NOW)
        tx.update_instance(
            instance_id,
            InstanceUpdate(status=status, sleep_until=wakes_at, checkpoint_id=checkpoint_id),
        )

    storage.run(setup)


def recorder(folder: Path) -> tuple[str, Path]:
    """A wake command that appends what it was given to a file, one line per launch."""
    log = folder / "launches.txt"
    script = folder / "record.py"
    script.write_text(
        "import os\n"
        f"with open({str(log)!r}, 'a') as out:\n"
        "    out.write(' '.join(os.environ.get(k, '-') for k in ('RUNTARA_INSTANCE_ID', "
        "'RUNTARA_TENANT_ID', 'RUNTARA_SERVER_ADDR', 'RUNTARA_SKIP_CERT_VERIFICATION', "
        "'RUNTARA_CHECKPOINT_ID')) + '\\n')\n"
    )
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}", log


def scheduler(storage, command, now=lambda: NOW, **options):
    return WakeScheduler(
        storage,
        command,
        server_addr="127.0.0.1:8001",
        skip_cert_verification=True,
        now=now,
        probe=0.5,
        **options,
    )


def launches(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def test_due_instances_are_relaunched_oldest_first_with_their_environment(storage, tmp_path):
    command, log = recorder(tmp_path)
    sleeper(storage, "second", NOW - dt.timedelta(seconds=60))
    sleeper(storage, "first", NOW - dt.timedelta(seconds=120), checkpoint_id="sleep::nap")
    sleeper(storage, "not-yet", NOW + dt.timedelta(seconds=60))
    sleeper(storage, "within-grace", NOW - dt.timedelta(seconds=2))
    sleeper(storage, "running", NOW - dt.timedelta(seconds=60), status=InstanceStatus.RUNNING)
    woken = scheduler(storage, command, batch=1).run_once()
    assert woken == ["first", "second"]
    assert launches(log) == [
        ["first", "acme", "127.0.0.1:8001", "true", "sleep::nap"],
        ["second", "acme", "127.0.0.1:8001", "true", "cp-1"],
    ]
    first = storage.run(lambda tx: tx.get_instance("first"))
    assert first.sleep_until is None and first.wake_claimed_until is None
    assert storage.run(lambda tx: tx.get_instance("not-yet")).sleep_until is not None


def test_an_instance_without_a_checkpoint_gets_no_checkpoint_variable(storage, tmp_path):
    command, log = recorder(tmp_path)
    sleeper(storage, "bare", NOW - dt.timedelta(minutes=1), checkpoint_id=None)
    assert scheduler(storage, command).run_once() == ["bare"]
    assert launches(log)[0][-1] == "-"


@pytest.mark.parametrize("command", ["exit 3", "/nonexistent/wake-command"])
def test_a_failing_wake_command_leaves_the_instance_due_and_backs_off(storage, command, caplog):
    sleeper(storage, "stuck", NOW - dt.timedelta(minutes=1))
    clock = {"now": NOW}
    wake = scheduler(storage, command, now=lambda: clock["now"], backoff=10)
    assert wake.run_once() == []
    stuck = storage.run(lambda tx: tx.get_instance("stuck"))
    assert stuck.sleep_until == NOW - dt.timedelta(minutes=1)  # still due
    assert stuck.wake_claimed_until == NOW + dt.timedelta(seconds=10)
    assert "waking instance 'stuck' failed" in caplog.text and "next try in 10s" in caplog.text
    clock["now"] = NOW + dt.timedelta(seconds=5)
    assert wake.run_once() == [] and "attempt 2" not in caplog.text  # backing off: not tried
    clock["now"] = NOW + dt.timedelta(seconds=11)
    wake.run_once()
    assert "attempt 2, next try in 20s" in caplog.text


def test_a_relaunched_command_that_keeps_running_counts_as_launched(storage, tmp_path):
    sleeper(storage, "long-runner", NOW - dt.timedelta(minutes=1))
    marker = tmp_path / "started"
    command = f"touch {shlex.quote(str(marker))}; sleep 30"
    wake = scheduler(storage, command)
    assert wake.run_once() == ["long-runner"]
    assert marker.exists()
    for child in wake._children:
        child.kill()
        child.wait()


def test_two_schedulers_launch_each_due_instance_exactly_once(storage, tmp_path):
    command, log = recorder(tmp_path)
    for index in range(20):
        sleeper(storage, f"due-{index:02}", NOW - dt.timedelta(seconds=100 - index))
    schedulers = [scheduler(storage, command, batch=3) for _ in range(2)]
    threads = [threading.Thread(target=s.run_once) for s in schedulers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    launched = sorted(line[0] for line in launches(log))
    assert launched == [f"due-{index:02}" for index in range(20)]
    due = storage.run(
        lambda tx: tx.claim_due_sleepers(
            due_before=NOW, now=NOW + dt.timedelta(hours=1), claim_until=NOW, limit=100
        )
    )
    assert due == []


def test_a_claim_from_a_crashed_scheduler_expires(storage, tmp_path):
    command, log = recorder(tmp_path)
    sleeper(storage, "orphan", NOW - dt.timedelta(minutes=5))
    storage.run(
        lambda tx: tx.update_instance(
            "orphan", records.InstanceUpdate(wake_claimed_until=NOW + dt.timedelta(seconds=30))
        )
    )
    assert scheduler(storage, command).run_once() == []
    later = NOW + dt.timedelta(seconds=31)
    assert scheduler(storage, command, now=lambda: later).run_once() == ["orphan"]


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
        env={
            **os.environ,
            "RUNTARA_INSTANCE_ID": "napper",
            "RUNTARA_TENANT_ID": "acme",
            "RUNTARA_SERVER_ADDR": "{}:{}".format(*first.address),
            "RUNTARA_SKIP_CERT_VERIFICATION": "true",
            "TEST_LOG": str(log),
        },
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
        "--wake-interval",
        "0.5",
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
    assert any("woke instance 'napper'" in line for line in second.log)
    with sqlite3.connect(database) as db:
        starts = [
            value
            for (value,) in db.execute(
                "SELECT created_at FROM instance_events WHERE instance_id = 'napper' "
                "AND event_type = 'started' ORDER BY id"
            )
        ]
    assert len(starts) == 2 and starts[1] >= wake_time  # relaunched only once due
