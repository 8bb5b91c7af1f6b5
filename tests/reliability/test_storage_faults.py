"""Storage faults: a full disk and a read-only database give clear errors,
corrupt nothing, and the server recovers when the disk does. A database the
server cannot write (read-only file, folder or mount, full disk) is refused at
start with one line naming the file and the reason.

These tests mount a small tmpfs (or bind-mount a file read-only), which needs
root (as in CI); elsewhere they skip with that reason, unless
RUNTARA_TEST_REQUIRE_ROOT=1 (set by CI) makes that a failure.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess

import pytest

from runtara import errors
from runtara.drivers.sqlite import SqliteDriver
from tests.driver_checks import assert_refuses_writes
from tests.other_user import require_root
from tests.support import RpcClient, ServerProcess, run_cli


@pytest.fixture(autouse=True)
def root():
    require_root("mounting a tmpfs")


@pytest.fixture
def tiny_disk(tmp_path):
    folder = tmp_path / "disk"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(folder)], check=True)
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=True)


@pytest.fixture
def read_only_file(tmp_path):
    """A migrated database file bind-mounted read-only over itself (its folder stays
    writable); yields its path and a function that makes it writable again."""
    database = tmp_path / "runtara.db"
    assert run_cli("migrate", "--database-url", f"sqlite:{database}", cwd=tmp_path).returncode == 0
    subprocess.run(["mount", "--bind", str(database), str(database)], check=True)
    subprocess.run(["mount", "-o", "remount,ro,bind", str(database)], check=True)
    mounted = [True]

    def writable() -> None:
        if mounted[0]:
            subprocess.run(["umount", str(database)], check=True)
            mounted[0] = False

    yield database, writable
    writable()


def fill(folder) -> None:
    """Write a filler file until the file system has no room left."""
    chunk = b"\0" * 65536
    with open(folder / "filler", "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(chunk)
        except OSError:
            pass
    with open(folder / "filler", "ab", buffering=0) as filler:
        try:
            while True:
                filler.write(b"\0")
        except OSError:
            pass


def one_line(result) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def serves(url: str, cwd, instance_id: str) -> bool:
    """A server starts on ``url``, registers ``instance_id`` and stops cleanly."""
    server = ServerProcess("--database-url", url, cwd=cwd)
    client = RpcClient(server.address)
    try:
        return client.register(instance_id).success
    finally:
        client.close()
        server.signal()
        assert server.wait() == 0


def remount(folder, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(folder)], check=True)


def integrity(database) -> str:
    with sqlite3.connect(database) as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


def test_a_full_disk_refuses_clearly_loses_nothing_and_recovers(tiny_disk, tmp_path):
    database = tiny_disk / "runtara.db"
    server = ServerProcess("--database-url", f"sqlite:{database}", cwd=tmp_path)
    client = RpcClient(server.address)
    try:
        assert client.register("filler").success
        acknowledged, refusals = [], []
        for index in range(200):
            state = os.urandom(64 * 1024)
            reply = client.checkpoint("filler", f"cp-{index}", state)
            if reply.HasField("error"):
                refusals.append(reply.error)
                if len(refusals) >= 3:
                    break
            else:
                acknowledged.append((f"cp-{index}", state))
        assert acknowledged and refusals, "the disk never filled"
        assert all(error.code == "CHECKPOINT_ERROR" for error in refusals)
        assert "full" in refusals[0].message.lower()
        remount(tiny_disk, "size=64m")  # space returns
        assert not client.checkpoint("filler", "after-space-returned", b"ok").HasField("error")
    finally:
        client.close()
        server.signal()
        assert server.wait() == 0
    assert integrity(database) == "ok"
    with sqlite3.connect(database) as db:
        stored = dict(db.execute("SELECT checkpoint_id, state FROM checkpoints"))
    for checkpoint_id, state in acknowledged:
        assert stored[checkpoint_id] == state
    assert stored["after-space-returned"] == b"ok"


def test_a_read_only_database_refuses_to_start_clearly_and_keeps_its_data(tiny_disk, tmp_path):
    database = tiny_disk / "runtara.db"
    url = f"sqlite:{database}"
    server = ServerProcess("--database-url", url, cwd=tmp_path)
    client = RpcClient(server.address)
    assert client.register("reader").success
    assert not client.checkpoint("reader", "before", b"kept").HasField("error")
    client.close()
    server.signal()
    assert server.wait() == 0
    remount(tiny_disk, "ro")
    refused = run_cli("--port", "0", "--database-url", url, cwd=tmp_path)
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in refused.stderr
    assert "its folder is read-only" in lines[0]
    remount(tiny_disk, "rw")
    assert integrity(database) == "ok"
    again = ServerProcess("--database-url", url, cwd=tmp_path)
    client = RpcClient(again.address)
    try:
        assert client.register("reader").success
        assert client.get_checkpoint("reader", "before").get_checkpoint.state == b"kept"
    finally:
        client.close()
        again.signal()
        assert again.wait() == 0


def test_starting_on_a_read_only_disk_is_one_clear_line(tiny_disk, tmp_path):
    assert (
        run_cli(
            "migrate", "--database-url", f"sqlite:{tiny_disk / 'runtara.db'}", cwd=tmp_path
        ).returncode
        == 0
    )
    remount(tiny_disk, "ro")
    fresh = run_cli(
        "--port", "0", "--database-url", f"sqlite:{tiny_disk / 'other.db'}", cwd=tmp_path
    )
    assert fresh.returncode == 1
    lines = fresh.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot" in lines[0] and "Traceback" not in fresh.stderr


def test_a_read_only_database_file_refuses_to_start_naming_it(read_only_file, tmp_path):
    database, writable = read_only_file
    url = f"sqlite:{database}"
    line = one_line(run_cli("--port", "0", "--database-url", url, cwd=tmp_path))
    assert str(database) in line and "the file is read-only" in line
    unhealthy = run_cli("health", "--database-url", url, cwd=tmp_path)
    assert unhealthy.returncode == 1 and "the file is read-only" in unhealthy.stdout
    assert_refuses_writes(SqliteDriver(url), "the file is read-only")
    writable()
    assert serves(url, tmp_path, "writable-again")


def test_a_read_only_mount_fails_the_storage_check_of_a_migrated_database(tiny_disk, tmp_path):
    database = tiny_disk / "runtara.db"
    url = f"sqlite:{database}"
    assert run_cli("migrate", "--database-url", url, cwd=tmp_path).returncode == 0
    remount(tiny_disk, "ro")
    driver = SqliteDriver(url)
    try:
        with pytest.raises(errors.StorageUnavailable, match="read-only") as refused:
            driver.check()
        assert str(database) in str(refused.value)
    finally:
        driver.close()
        remount(tiny_disk, "rw")


def test_a_full_disk_refuses_to_start_with_one_line_until_there_is_room(tiny_disk, tmp_path):
    database = tiny_disk / "runtara.db"
    url = f"sqlite:{database}"
    assert run_cli("migrate", "--database-url", url, cwd=tmp_path).returncode == 0
    fill(tiny_disk)
    line = one_line(run_cli("--port", "0", "--database-url", url, cwd=tmp_path))
    assert str(database) in line and "the disk is full" in line
    fresh = one_line(
        run_cli("--port", "0", "--database-url", f"sqlite:{tiny_disk / 'new.db'}", cwd=tmp_path)
    )
    assert "the disk is full" in fresh and not (tiny_disk / "new.db").exists()
    unhealthy = run_cli("health", "--database-url", url, cwd=tmp_path)
    assert unhealthy.returncode == 1 and "the disk is full" in unhealthy.stdout
    (tiny_disk / "filler").unlink()
    assert run_cli("health", "--database-url", url, cwd=tmp_path).returncode == 0
    assert serves(url, tmp_path, "room-again")
    assert integrity(database) == "ok"
