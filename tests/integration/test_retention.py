"""Retention (`prune`, `--retention`) and stale instances (`--stale-after`)."""

from __future__ import annotations

import datetime as dt
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from runtara import records
from runtara.admin import retention, staleness
from runtara.config import StorageConfig
from runtara.records import InstanceStatus, InstanceUpdate
from runtara.storage import selection
from tests.support import RpcClient, ServerProcess, run_cli, sqlite_url, wait_for

NOW = dt.datetime.now(dt.timezone.utc)


@pytest.fixture
def storage(database_url):
    driver = selection.open_driver(StorageConfig(database_url=database_url), workers=4)
    driver.migrate()
    yield driver
    driver.close()


def instance(storage, instance_id, status, finished_ago=None, active_ago=None):
    def setup(tx):
        tx.create_instance(instance_id, "t", NOW - dt.timedelta(days=30))
        tx.update_instance(
            instance_id,
            InstanceUpdate(
                status=status,
                started_at=NOW - dt.timedelta(days=30),
                finished_at=None if finished_ago is None else NOW - finished_ago,
                last_activity_at=None if active_ago is None else NOW - active_ago,
            ),
        )
        tx.insert_checkpoint(instance_id, "cp", b"state", NOW)
        tx.insert_event(records.Event(instance_id, records.EventType.STARTED, NOW))

    storage.run(setup)


def existing(storage):
    return {i.instance_id for i in storage.run(lambda tx: tx.list_instances(limit=1000))}


def test_prune_deletes_only_instances_finished_before_the_cutoff(storage):
    day = dt.timedelta(days=1)
    instance(storage, "old-completed", InstanceStatus.COMPLETED, finished_ago=10 * day)
    instance(storage, "old-failed", InstanceStatus.FAILED, finished_ago=10 * day)
    instance(storage, "old-cancelled", InstanceStatus.CANCELLED, finished_ago=10 * day)
    instance(storage, "recent", InstanceStatus.COMPLETED, finished_ago=day)
    instance(storage, "running", InstanceStatus.RUNNING)
    instance(storage, "sleeping", InstanceStatus.SUSPENDED)
    # a live instance with a stray finish time is still never touched
    instance(storage, "live-with-finish-time", InstanceStatus.RUNNING, finished_ago=10 * day)
    cutoff = NOW - 7 * day
    dry = retention.prune(storage, cutoff, dry_run=True)
    assert sorted(dry.deleted) == ["old-cancelled", "old-completed", "old-failed"]
    assert len(existing(storage)) == 7
    result = retention.prune(storage, cutoff, batch_size=2)
    assert sorted(result.deleted) == ["old-cancelled", "old-completed", "old-failed"]
    assert result.batches == 2
    assert existing(storage) == {"recent", "running", "sleeping", "live-with-finish-time"}
    assert storage.run(lambda tx: tx.count_checkpoints("old-failed")) == 0
    assert storage.run(lambda tx: tx.count_events("old-failed")) == 0


def test_prune_command(tmp_path):
    url = sqlite_url(tmp_path)
    driver = selection.open_driver(StorageConfig(database_url=url), workers=1)
    driver.migrate()
    instance(driver, "ancient", InstanceStatus.COMPLETED, finished_ago=dt.timedelta(days=40))
    instance(driver, "fresh", InstanceStatus.COMPLETED, finished_ago=dt.timedelta(hours=1))
    driver.close()
    dry = run_cli(
        "prune", "--finished-before", "30d", "--dry-run", "--database-url", url, cwd=tmp_path
    )
    assert dry.returncode == 0 and dry.stdout.splitlines()[0] == "ancient"
    assert "would delete 1 instances finished before" in dry.stdout
    real = run_cli("prune", "--finished-before", "30d", "--database-url", url, cwd=tmp_path)
    assert real.returncode == 0 and "deleted 1 instances finished before" in real.stdout
    again = run_cli("prune", "--finished-before", "30d", "--database-url", url, cwd=tmp_path)
    assert "deleted 0 instances" in again.stdout
    bad = run_cli("prune", "--finished-before", "soon", "--database-url", url, cwd=tmp_path)
    assert bad.returncode == 2 and "is not a duration" in bad.stderr


def test_an_interrupted_prune_leaves_every_instance_whole_or_gone(tmp_path):
    database = tmp_path / "runtara.db"
    url = sqlite_url(tmp_path)
    driver = selection.open_driver(StorageConfig(database_url=url), workers=1)
    driver.migrate()
    driver.close()
    finished = (NOW - dt.timedelta(days=60)).strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(database) as db:
        db.executemany(
            "INSERT INTO instances (instance_id, tenant_id, status, finished_at) "
            "VALUES (?, 't', 'completed', ?)",
            [(f"i{n:05}", finished) for n in range(3000)],
        )
        db.executemany(
            "INSERT INTO checkpoints (instance_id, checkpoint_id, state) VALUES (?, 'cp', x'00')",
            [(f"i{n:05}",) for n in range(3000)],
        )
        db.executemany(
            "INSERT INTO instance_events (instance_id, event_type) VALUES (?, 'completed')",
            [(f"i{n:05}",) for n in range(3000)],
        )
    pruning = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runtara",
            "prune",
            "--finished-before",
            "30d",
            "--batch-size",
            "10",
            "--database-url",
            url,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert pruning.stdout.readline().startswith("deleted 10 instances")
    pruning.send_signal(signal.SIGKILL)
    pruning.wait()
    pruning.stdout.close()
    with sqlite3.connect(database) as db:
        left = db.execute("SELECT count(*) FROM instances").fetchone()[0]
        orphans = db.execute(
            "SELECT (SELECT count(*) FROM checkpoints WHERE instance_id NOT IN "
            "(SELECT instance_id FROM instances)) + (SELECT count(*) FROM instance_events "
            "WHERE instance_id NOT IN (SELECT instance_id FROM instances))"
        ).fetchone()[0]
        incomplete = db.execute(
            "SELECT count(*) FROM instances i WHERE NOT EXISTS (SELECT 1 FROM checkpoints c "
            "WHERE c.instance_id = i.instance_id) OR NOT EXISTS (SELECT 1 FROM instance_events e "
            "WHERE e.instance_id = i.instance_id)"
        ).fetchone()[0]
    assert 0 < left < 3000 and left % 10 == 0
    assert orphans == 0 and incomplete == 0
    finish = run_cli("prune", "--finished-before", "30d", "--database-url", url, cwd=tmp_path)
    assert finish.returncode == 0 and f"deleted {left} instances" in finish.stdout


def test_the_server_prunes_periodically_with_retention(tmp_path):
    url = sqlite_url(tmp_path)
    driver = selection.open_driver(StorageConfig(database_url=url), workers=1)
    driver.migrate()
    instance(driver, "expired", InstanceStatus.FAILED, finished_ago=dt.timedelta(hours=2))
    instance(driver, "kept", InstanceStatus.FAILED, finished_ago=dt.timedelta(minutes=1))
    driver.close()
    server = ServerProcess("--retention", "1h", cwd=tmp_path)
    try:
        with sqlite3.connect(tmp_path / "runtara.db") as db:
            wait_for(lambda: db.execute("SELECT count(*) FROM instances").fetchone()[0] == 1)
            assert db.execute("SELECT instance_id FROM instances").fetchall() == [("kept",)]
    finally:
        server.signal()
        server.wait()


def test_stale_running_instances_are_marked_failed(storage):
    minute = dt.timedelta(minutes=1)
    instance(storage, "silent", InstanceStatus.RUNNING, active_ago=10 * minute)
    instance(storage, "chatty", InstanceStatus.RUNNING, active_ago=minute / 6)
    instance(storage, "asleep", InstanceStatus.SUSPENDED, active_ago=10 * minute)
    assert staleness.mark_stale(storage, NOW, stale_after=120) == ["silent"]
    silent = storage.run(lambda tx: tx.get_instance("silent"))
    assert silent.status is InstanceStatus.FAILED and silent.finished_at == NOW
    assert silent.error.startswith("Instance stale: no activity since ")
    assert silent.error.endswith("(timeout: 120s)")
    assert storage.run(lambda tx: tx.get_instance("chatty")).status is InstanceStatus.RUNNING
    assert staleness.mark_stale(storage, NOW, stale_after=120) == []


def test_the_server_fails_instances_that_go_quiet(tmp_path):
    server = ServerProcess("--stale-after", "1", cwd=tmp_path)
    client = RpcClient(server.address)
    try:
        assert client.register("quiet").success
        assert client.register("talkative").success
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            client.event("talkative", 0)  # heartbeats keep it alive
            time.sleep(0.2)
        status = client.status("quiet")
        assert status.status == 5 and "Instance stale" in status.error
        assert client.status("talkative").status == 2
    finally:
        client.close()
        server.signal()
        server.wait()
