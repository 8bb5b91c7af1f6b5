"""The SQLite write group on real database files, failures injected through the
connect function, the work, a connection subclass, or a signal."""

from __future__ import annotations

import collections
import signal
import sqlite3
import threading
import time

import pytest

from runtara import errors
from runtara.drivers.sqlite.write_group import WriteGroup
from tests.support import wait_for


class Faulty(sqlite3.Connection):
    """A real connection whose COMMIT can be made to fail or to hang, and whose
    statements can be interrupted just as they return."""

    store: Store

    def execute(self, sql, *args):
        if sql == "COMMIT":
            self.store.commits_seen += 1
            if self.store.commits_seen in self.store.failing_commits:
                raise sqlite3.OperationalError("disk I/O error (injected)")
            if self.store.commits_seen in self.store.stuck_commits:
                self.store.commit_entered.set()
                self.store.release.wait(30)
        cursor = super().execute(sql, *args)
        self.store.seen[sql] += 1
        if (sql, self.store.seen[sql]) in self.store.interrupted_after:
            raise KeyboardInterrupt(f"arrived as {sql} returned")
        return cursor

    def close(self):
        self.store.closes += 1
        super().close()


class Store:
    """A database file, the connect function of a write group on it, and the faults to inject."""

    def __init__(self, path) -> None:
        self.path = path
        self.connects = 0
        self.failing_connects: set[int] = set()
        self.commits_seen = 0
        self.failing_commits: set[int] = set()
        self.stuck_commits: set[int] = set()
        self.seen: collections.Counter[str] = collections.Counter()
        self.interrupted_after: set[tuple[str, int]] = set()
        """(statement, its number among its kind) to interrupt as it returns."""
        self.closes = 0
        self.commit_entered = threading.Event()
        self.release = threading.Event()
        setup = sqlite3.connect(path, isolation_level=None)
        setup.execute("PRAGMA journal_mode = WAL")
        setup.execute("CREATE TABLE rows (name TEXT PRIMARY KEY)")
        setup.close()

    def connect(self) -> sqlite3.Connection:
        self.connects += 1
        if self.connects in self.failing_connects:
            raise errors.StorageUnavailable(f"cannot open {self.path}: injected")
        connection = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, factory=Faulty
        )
        connection.store = self
        return connection

    def rows(self) -> set[str]:
        with sqlite3.connect(self.path) as reader:
            return {row[0] for row in reader.execute("SELECT name FROM rows")}


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "group.db")


@pytest.fixture
def group(store):
    group = WriteGroup(store.connect, wait_timeout=10)
    yield group
    store.release.set()
    group.close()


class Counted:
    """Work that inserts one row, counts its runs, and may fail after writing."""

    def __init__(self, name: str, fails: BaseException | None = None) -> None:
        self.name = name
        self.fails = fails
        self.runs = 0

    def __call__(self, connection: sqlite3.Connection) -> str:
        self.runs += 1
        connection.execute("INSERT INTO rows (name) VALUES (?)", (self.name,))
        if self.fails is not None:
            raise self.fails
        return self.name


def submit(group: WriteGroup, work) -> dict:
    """Run ``work`` on a new thread; the dict gets its result or error."""
    outcome: dict = {}

    def call() -> None:
        try:
            outcome["result"] = group.run(work)
        except BaseException as error:
            outcome["error"] = error

    outcome["thread"] = threading.Thread(target=call)
    outcome["thread"].start()
    return outcome


def finished(outcome: dict) -> dict:
    outcome["thread"].join(15)
    assert not outcome["thread"].is_alive(), "a caller was never released"
    assert ("result" in outcome) != ("error" in outcome), outcome
    return outcome


def queue_in_order(group: WriteGroup, works: list) -> list[dict]:
    """Submit ``works`` one by one, each queued before the next (the group must be busy)."""
    outcomes = []
    for work in works:
        expected = group.queued + 1
        outcomes.append(submit(group, work))
        wait_for(lambda expected=expected: group.queued == expected)
    return outcomes


def in_one_batch(group: WriteGroup, works: list) -> list[dict]:
    """Run ``works`` concurrently as one batch, in this order: they queue behind
    a job that holds the leadership until all of them wait."""
    gate = threading.Event()
    holding = threading.Event()

    def hold(connection):
        holding.set()
        gate.wait(10)

    holder = submit(group, hold)
    assert holding.wait(5)
    outcomes = queue_in_order(group, works)
    gate.set()
    finished(holder)
    return [finished(outcome) for outcome in outcomes]


def keeps_serving(group: WriteGroup, store: Store, name: str) -> None:
    assert group.run(Counted(name)) == name
    assert name in store.rows()


def test_a_lone_write_commits_and_returns_its_result(group, store):
    work = Counted("only")
    assert group.run(work) == "only"
    assert work.runs == 1
    assert store.rows() == {"only"}
    assert (group.commits, group.transactions) == (1, 1)


def test_a_lone_write_runs_on_the_callers_own_thread(group):
    assert group.run(lambda connection: threading.get_ident()) == threading.get_ident()


def test_concurrent_writes_share_commits(group, store):
    works = [Counted(f"w{index}") for index in range(20)]
    outcomes = in_one_batch(group, works)
    assert [outcome["result"] for outcome in outcomes] == [work.name for work in works]
    assert all(work.runs == 1 for work in works)
    assert store.rows() == {work.name for work in works}
    assert group.commits == 2 and group.transactions == 21  # the holder's batch, then all 20


def test_a_refusal_in_a_batch_undoes_only_its_own_work(group, store):
    works = [
        Counted(f"w{index}", errors.RequestError("refused") if index % 2 else None)
        for index in range(16)
    ]
    outcomes = in_one_batch(group, works)
    for work, outcome in zip(works, outcomes, strict=True):
        assert work.runs == 1
        if work.fails is None:
            assert outcome["result"] == work.name
        else:
            assert outcome["error"] is work.fails
    assert store.rows() == {work.name for work in works if work.fails is None}
    keeps_serving(group, store, "after")


@pytest.mark.parametrize(
    "failure",
    [ZeroDivisionError("a bug in a handler"), KeyboardInterrupt()],
    ids=["a-raising-handler", "a-base-exception"],
)
def test_a_failing_work_in_a_batch_reaches_its_own_caller_alone_and_runs_once(
    group, store, failure
):
    works = [Counted("first"), Counted("failing", failure), Counted("third")]
    first, failing, third = in_one_batch(group, works)
    # The first queued leads the batch; what the second caller's work raises
    # reaches that caller, and the others' writes commit.
    assert first["result"] == "first" and third["result"] == "third"
    assert failing["error"] is failure
    assert [work.runs for work in works] == [1, 1, 1]
    assert store.rows() == {"first", "third"}
    keeps_serving(group, store, "after")


def test_a_storage_error_inside_work_is_a_storage_error_for_that_caller(group, store):
    def duplicate(connection):
        connection.execute("INSERT INTO rows (name) VALUES ('twice')")
        connection.execute("INSERT INTO rows (name) VALUES ('twice')")

    good, bad = in_one_batch(group, [Counted("good"), duplicate])
    assert good["result"] == "good"
    assert isinstance(bad["error"], errors.StorageError)
    assert "UNIQUE constraint failed" in str(bad["error"])
    assert store.rows() == {"good"}


def test_a_commit_failure_fails_the_whole_batch_and_the_group_recovers(group, store):
    store.failing_commits = {2}  # the holder's batch commits; the next one fails
    works = [Counted(f"w{index}") for index in range(8)] + [
        Counted("refused", errors.RequestError("no"))
    ]
    outcomes = in_one_batch(group, works)
    for outcome in outcomes[:-1]:
        assert isinstance(outcome["error"], errors.StorageError)
        assert "disk I/O error (injected)" in str(outcome["error"])
    assert outcomes[-1]["error"] is works[-1].fails  # a refusal stands as it is
    assert all(work.runs == 1 for work in works)
    assert store.rows() == set()
    keeps_serving(group, store, "after")
    assert store.connects == 2  # the failed connection was replaced


def test_a_failed_reconnect_after_a_failed_batch_reaches_every_caller(group, store):
    store.failing_commits = {1}  # the first batch fails to commit...
    store.failing_connects = {2}  # ...and the next batch cannot reopen the database
    gate = threading.Event()
    first = Counted("lost")

    def held(connection):
        gate.wait(10)
        return first(connection)

    lost = submit(group, held)
    wait_for(lambda: store.connects == 1 and group.queued == 0)
    unreachable = [Counted(f"u{index}") for index in range(4)]
    outcomes = [submit(group, work) for work in unreachable]
    wait_for(lambda: group.queued == len(unreachable))
    gate.set()
    assert isinstance(finished(lost)["error"], errors.StorageError)
    assert "disk I/O error (injected)" in str(lost["error"])
    for outcome in map(finished, outcomes):
        assert isinstance(outcome["error"], errors.StorageUnavailable)
        assert "injected" in str(outcome["error"])
    assert first.runs == 1 and all(work.runs == 0 for work in unreachable)
    keeps_serving(group, store, "after")
    assert store.rows() == {"after"} and store.connects == 3


def test_a_transaction_sqlite_rolled_back_fails_every_job_of_the_batch(group, store):
    def disk_full(connection):
        connection.execute("INSERT INTO rows (name) VALUES ('partial')")
        connection.execute("ROLLBACK")  # what SQLite does itself on some I/O errors
        raise sqlite3.OperationalError("database or disk is full")

    works = [Counted("earlier"), disk_full, Counted("later")]
    earlier, full, later = in_one_batch(group, works)
    assert "database or disk is full" in str(full["error"])
    for outcome in (earlier, later):
        assert isinstance(outcome["error"], errors.StorageError)
        assert "rolled back" in str(outcome["error"])
    assert works[0].runs == 1 and works[2].runs == 0
    assert store.rows() == set()
    keeps_serving(group, store, "after")


def test_a_leader_whose_own_work_raises_a_base_exception_gets_it_and_the_batch_commits(
    group, store
):
    exit_request = SystemExit(3)
    works = [Counted("leader", exit_request), Counted("follower")]
    leader, follower = in_one_batch(group, works)
    assert leader["error"] is exit_request
    assert follower["result"] == "follower"
    assert store.rows() == {"follower"}
    keeps_serving(group, store, "after")


@pytest.mark.parametrize(
    ("statement", "rows", "told"),
    [
        ("BEGIN IMMEDIATE", set(), "it was not applied"),
        ("COMMIT", {"leader", "w1", "w2"}, "it may have been applied"),
    ],
)
def test_a_leader_interrupted_in_its_own_steps_gets_the_interruption_and_others_the_truth(
    group, store, statement, rows, told
):
    gate, holding = threading.Event(), threading.Event()
    holder = submit(group, lambda connection: holding.set() or gate.wait(10))
    assert holding.wait(5)
    works = [Counted("leader"), Counted("w1"), Counted("w2")]
    leader, *others = queue_in_order(group, works)  # the first leads the next batch
    store.interrupted_after.add((statement, 2))  # in the second batch: the leader's
    gate.set()
    finished(holder)
    assert isinstance(finished(leader)["error"], KeyboardInterrupt)
    for outcome in map(finished, others):
        assert isinstance(outcome["error"], errors.StorageError)
        assert told in str(outcome["error"])
    assert store.rows() == rows
    keeps_serving(group, store, "after")


class Interrupted(BaseException):
    """What the test's signal handler raises in the main thread."""


@pytest.fixture
def interrupt_main_thread():
    """``interrupt(before)``: send SIGUSR1 to this (the main) thread; its handler
    calls ``before()``, then raises Interrupted wherever the thread is."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are handled in the main thread only")
    steps = {}

    def handler(signum, frame):
        steps.pop("before")()
        raise Interrupted

    previous = signal.signal(signal.SIGUSR1, handler)

    def interrupt(before=lambda: None) -> None:
        steps["before"] = before
        signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)

    yield interrupt
    signal.signal(signal.SIGUSR1, previous)


def test_a_caller_interrupted_while_queued_is_withdrawn(store, interrupt_main_thread):
    group = WriteGroup(store.connect, wait_timeout=3)
    try:
        gate, holding = threading.Event(), threading.Event()
        holder = submit(group, lambda connection: holding.set() or gate.wait(10))
        assert holding.wait(5)
        threading.Thread(
            target=lambda: wait_for(lambda: group.queued == 1) and interrupt_main_thread()
        ).start()
        interrupted = Counted("interrupted")
        with pytest.raises(Interrupted):
            group.run(interrupted)
        assert group.queued == 0
        gate.set()
        finished(holder)
        assert interrupted.runs == 0
        keeps_serving(group, store, "after")
        assert finished(submit(group, Counted("from another thread")))["result"]
    finally:
        gate.set()
        group.close()


@pytest.mark.parametrize("queued_behind", [0, 2])
def test_a_caller_interrupted_just_after_it_was_made_leader_passes_the_leadership_on(
    store, interrupt_main_thread, queued_behind
):
    group = WriteGroup(store.connect, wait_timeout=3)
    try:
        gate, holding = threading.Event(), threading.Event()
        holder = submit(group, lambda connection: holding.set() or gate.wait(10))
        assert holding.wait(5)
        interrupted = Counted("interrupted")
        behind = [Counted(f"behind-{index}") for index in range(queued_behind)]

        def queue_the_others_and_interrupt() -> None:
            wait_for(lambda: group.queued == 1)
            outcomes.extend(queue_in_order(group, behind))

            def let_the_holder_hand_over() -> None:
                gate.set()
                finished(holder)  # it made the interrupted caller its successor

            interrupt_main_thread(let_the_holder_hand_over)

        outcomes: list[dict] = []
        threading.Thread(target=queue_the_others_and_interrupt).start()
        with pytest.raises(Interrupted):
            group.run(interrupted)
        assert [finished(outcome)["result"] for outcome in outcomes] == [
            work.name for work in behind
        ]
        assert interrupted.runs == 0
        assert group.queued == 0
        keeps_serving(group, store, "after")
        assert "interrupted" not in store.rows()
    finally:
        gate.set()
        group.close()


def test_close_during_a_batch_lets_it_commit_and_leaks_no_connection(store):
    group = WriteGroup(store.connect, wait_timeout=10)
    gate, holding = threading.Event(), threading.Event()

    def held(connection):
        holding.set()
        gate.wait(10)
        return Counted("under way")(connection)

    under_way = submit(group, held)
    assert holding.wait(5)
    (queued,) = queue_in_order(group, [Counted("queued")])
    group.close()
    gate.set()
    assert finished(under_way)["result"] == "under way"
    assert isinstance(finished(queued)["error"], errors.StorageUnavailable)
    assert "closed" in str(queued["error"])
    assert store.rows() == {"under way"}
    assert store.connects == store.closes == 1


def test_a_write_after_close_fails_without_opening_the_database(group, store):
    keeps_serving(group, store, "before")
    group.close()
    assert store.closes == 1
    with pytest.raises(errors.StorageUnavailable, match="closed"):
        group.run(Counted("after"))
    assert store.connects == 1 and store.rows() == {"before"}


def test_a_stuck_commit_gives_followers_a_bounded_honest_wait(store):
    group = WriteGroup(store.connect, wait_timeout=1.0)
    try:
        store.stuck_commits = {2}
        gate, holding = threading.Event(), threading.Event()
        holder = submit(group, lambda connection: holding.set() or gate.wait(10))
        assert holding.wait(5)
        committing = [Counted(name) for name in ("leader", "in-batch-1", "in-batch-2")]
        committing_outcomes = queue_in_order(group, committing)  # the first leads next
        gate.set()
        finished(holder)
        assert store.commit_entered.wait(5)
        waiting = [Counted("queued-1"), Counted("queued-2")]
        started = time.monotonic()
        waiting_outcomes = [submit(group, work) for work in waiting]
        for outcome in committing_outcomes[1:] + waiting_outcomes:
            finished(outcome)
        assert time.monotonic() - started < 5
        for outcome in committing_outcomes[1:]:
            assert isinstance(outcome["error"], errors.StorageUnavailable)
            assert str(outcome["error"]).startswith("Database unavailable: ")
            assert "may still have been applied" in str(outcome["error"])
        for outcome in waiting_outcomes:
            assert isinstance(outcome["error"], errors.StorageUnavailable)
            assert str(outcome["error"]).startswith("Database unavailable: ")
            assert "was not started" in str(outcome["error"])
        assert group.queued == 0
        store.release.set()
        assert finished(committing_outcomes[0])["result"] == "leader"
        assert all(work.runs == 0 for work in waiting)
        assert store.rows() == {"leader", "in-batch-1", "in-batch-2"}
        keeps_serving(group, store, "after")
    finally:
        store.release.set()
        group.close()


def test_batches_hold_at_most_max_batch_jobs(store):
    group = WriteGroup(store.connect, max_batch=3)
    try:
        works = [Counted(f"w{index}") for index in range(7)]
        outcomes = in_one_batch(group, works)
        assert [outcome["result"] for outcome in outcomes] == [work.name for work in works]
        assert group.commits == 1 + 3  # the holder, then 3 + 3 + 1
        assert group.transactions == 8
    finally:
        group.close()
