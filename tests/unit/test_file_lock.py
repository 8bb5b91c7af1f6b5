"""The writers' lock of the SQLite driver: real flocks on real files, held by other
processes or by other open files of this one (flock treats those alike), and the
SQLite driver writing while the lock cannot be had."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from runtara import clock
from runtara.drivers.sqlite import SqliteDriver
from runtara.drivers.sqlite.file_lock import FileLock
from tests.support import wait_for

HOLD = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


class Peer:
    """Another process that holds the lock on ``path`` until :meth:`release`."""

    def __init__(self, path: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout.readline() == "held\n"

    def release(self) -> None:
        self.process.stdin.close()
        self.process.wait(10)
        self.process.stdout.close()


@pytest.fixture
def lock_path(tmp_path):
    return tmp_path / "runtara.db-writers.lock"


@pytest.fixture
def peer(lock_path):
    holder = Peer(lock_path)
    yield holder
    if holder.process.poll() is None:
        holder.release()


@pytest.fixture
def locks():
    """``make(path, timeout)``: a FileLock, closed after the test."""
    made: list[FileLock] = []

    def make(path: Path, timeout: float = 10.0) -> FileLock:
        made.append(FileLock(path, timeout=timeout))
        return made[-1]

    yield make
    for lock in made:
        lock.close()


def holds(lock: FileLock) -> bool:
    with lock.held() as holding:
        return holding


def hold_in_thread(lock: FileLock) -> tuple[threading.Event, threading.Event, dict]:
    """Take ``lock`` on a new thread and keep it until the second event is set;
    the first is set once it has it, the dict gets whether it got it."""
    taken, done = threading.Event(), threading.Event()
    outcome: dict = {}

    def hold() -> None:
        with lock.held() as holding:
            outcome["holding"] = holding
            taken.set()
            done.wait(10)

    threading.Thread(target=hold, daemon=True).start()
    return taken, done, outcome


def test_the_lock_keeps_two_holders_apart(lock_path, locks):
    first, second = locks(lock_path), locks(lock_path, timeout=0.2)
    with first.held() as holding:
        assert holding
        assert not holds(second)
    wait_for(lambda: holds(second))  # once its helper, still waiting, got it and let it go


def test_a_lock_held_by_another_process_is_handed_over_when_released(lock_path, peer, locks):
    lock = locks(lock_path, timeout=30)
    taken, done, outcome = hold_in_thread(lock)
    assert not taken.wait(0.3)
    peer.release()
    assert taken.wait(10) and outcome["holding"]
    done.set()


def test_a_lock_held_forever_elsewhere_is_given_up_after_the_timeout(
    lock_path, peer, locks, caplog
):
    lock = locks(lock_path, timeout=0.5)
    assert not holds(lock)
    # The wait for it has outlasted the timeout: the next callers go ahead at once.
    later = threading.Thread(target=lambda: [holds(lock) for _ in range(5)])
    later.start()
    later.join(2.0)
    assert not later.is_alive(), "each caller waited for a lock known to be stuck"
    stuck = [record for record in caplog.records if "held by another process" in record.message]
    assert len(stuck) == 1 and stuck[0].levelno == logging.WARNING
    peer.release()
    wait_for(lambda: holds(lock))


def test_a_lock_its_caller_gave_up_is_released_as_soon_as_it_is_had(lock_path, locks):
    other, impatient, third = locks(lock_path), locks(lock_path, 0.2), locks(lock_path)
    taken, done, _ = hold_in_thread(other)
    assert taken.wait(5)
    assert not holds(impatient)
    done.set()  # the impatient lock's helper now gets the lock, for nobody
    assert holds(third)
    wait_for(lambda: holds(impatient))


def test_closing_while_the_helper_waits_releases_and_closes_later(lock_path, peer, locks):
    lock = locks(lock_path, timeout=0.2)
    assert not holds(lock)
    lock.close()
    peer.release()
    wait_for(lambda: not any(t.name == f"lock {lock_path.name}" for t in threading.enumerate()))
    assert holds(locks(lock_path))
    assert not holds(lock)  # a closed lock is not taken any more


def test_a_file_system_that_refuses_flock_is_reported_once(lock_path, locks, monkeypatch, caplog):
    def refuse(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", refuse)
    lock = locks(lock_path)
    assert [holds(lock) for _ in range(3)] == [False, False, False]
    refused = [record for record in caplog.records if "cannot use" in record.message]
    assert len(refused) == 1 and "No locks available" in refused[0].message


def test_a_lock_file_that_cannot_be_opened_is_reported_once(lock_path, locks, caplog):
    lock_path.mkdir()  # not a file: opening it for writing fails
    lock = locks(lock_path)
    assert [holds(lock) for _ in range(2)] == [False, False]
    refused = [record for record in caplog.records if "cannot use" in record.message]
    assert len(refused) == 1 and str(lock_path) in refused[0].message


@pytest.mark.parametrize("change", ["deleted", "replaced"])
def test_a_lock_file_deleted_or_replaced_is_noticed_by_its_next_holder(lock_path, locks, change):
    ours = locks(lock_path, timeout=0.3)
    assert holds(ours)  # its file is open from now on
    if change == "deleted":
        lock_path.unlink()
    else:
        replacement = lock_path.with_name("replacement")
        replacement.touch()
        replacement.replace(lock_path)
    theirs = locks(lock_path)  # opens the file now at the path
    taken, done, outcome = hold_in_thread(theirs)
    assert taken.wait(5) and outcome["holding"]
    assert not holds(ours)
    done.set()
    wait_for(lambda: holds(ours))


def taken_as_nobody(lock_path: Path) -> bool:
    """Whether a child process running as user nobody gets the lock."""
    child = os.fork()
    if child == 0:
        try:
            os.setgid(65534)
            os.setuid(65534)
            with FileLock(lock_path, timeout=0.3).held() as holding:
                os._exit(0 if holding else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) in (0, 1)
    return os.waitstatus_to_exitcode(status) == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to make a file another user reads")
def test_a_lock_file_this_user_may_only_read_still_locks(locks):
    folder = Path(tempfile.mkdtemp())  # not under tmp_path, which other users cannot enter
    lock_path = folder / "runtara.db-writers.lock"
    try:
        folder.chmod(0o755)
        lock_path.touch(0o444)
        assert taken_as_nobody(lock_path)
        taken, done, _ = hold_in_thread(locks(lock_path))
        assert taken.wait(5)
        assert not taken_as_nobody(lock_path)  # a real lock, kept apart from this one
        done.set()
    finally:
        lock_path.unlink()
        folder.rmdir()


# --- the SQLite driver writing without the lock ----------------------------------------


@pytest.fixture
def driver(tmp_path):
    storage = SqliteDriver(f"sqlite:{tmp_path / 'runtara.db'}?busy_timeout_ms=500")
    storage.migrate()
    yield storage
    storage.close()


def registers(driver: SqliteDriver, instance_id: str) -> None:
    registration = driver.register_instance(instance_id, "tenant", None, clock.utc_now())
    assert registration is not None
    assert driver.run(lambda tx: tx.get_instance(instance_id), write=False) is not None


def test_writes_go_ahead_while_another_process_holds_the_lock_forever(tmp_path, driver):
    holder = Peer(tmp_path / "runtara.db-writers.lock")
    try:
        outcome: dict = {}
        writer = threading.Thread(
            target=lambda: outcome.update(done=[registers(driver, f"i{n}") for n in range(3)])
        )
        writer.start()
        writer.join(10)
        assert not writer.is_alive(), "the write waited for the lock held elsewhere"
        assert "done" in outcome
        assert holder.process.poll() is None  # still holding it
    finally:
        holder.release()
    registers(driver, "after")


def test_writes_go_ahead_on_a_file_system_that_refuses_flock(driver, monkeypatch):
    def refuse(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", refuse)
    registers(driver, "one")
    registers(driver, "two")
    driver.check()


def test_writes_go_ahead_when_the_lock_file_cannot_be_opened(tmp_path, driver):
    (tmp_path / "runtara.db-writers.lock").mkdir()
    registers(driver, "one")
    driver.check()
