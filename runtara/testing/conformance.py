"""The storage-driver conformance kit: every driver runs these tests.

Subclass :class:`DriverConformance` in a test module of your driver package
(its name must start with ``Test``) and provide one fixture, ``driver``, that
yields a new driver on an *empty* store (no tables), constructed with
``workers=16`` or more, and closes it afterwards. When several processes can
share one store (a file, a server), also provide ``driver_factory``: a
picklable callable, such as a :func:`functools.partial` of your driver class,
that builds another driver on the store of ``driver``; the kit calls it in a
child process. A driver whose store lives in one process sets
``shared_between_processes = False`` instead::

    import functools
    import pytest
    from runtara.testing.conformance import DriverConformance

    class TestMyDriver(DriverConformance):
        @pytest.fixture
        def driver_factory(self, tmp_path):
            return functools.partial(MyDriver, f"mydb:{tmp_path}/store", workers=16)

        @pytest.fixture
        def driver(self, driver_factory):
            driver = driver_factory()
            yield driver
            driver.close()

The kit covers every method of :class:`runtara.storage.transaction.Transaction` and
:class:`runtara.storage.base.StorageDriver`, the operation methods included
(so that a driver that replaces one is held to the rules of
:mod:`runtara.storage.operations`): semantics, errors, transaction scope, work
running exactly once per call, concurrency from many threads and from two
processes (exactly-once checkpoints, take-once custom signals, serialized
updates of one instance), payloads up to the 64 MiB frame limit, non-UTF-8
bytes, and migrations from an empty store.
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import queue
import threading
import traceback
from collections.abc import Callable

import attrs
import pytest

from runtara import errors, limits, records
from runtara.records import EventType, InstanceStatus, InstanceUpdate, SignalType
from runtara.storage import base, launches, operations

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=dt.timezone.utc)
"""A fixed instant with whole milliseconds (the precision drivers must keep)."""

BINARY = bytes([0x00, 0xFF, 0x80, 0x7F, 0xFE, 0x01, 0x00, 0x00])


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def in_threads(count: int, target: Callable[[int], object]) -> list[object]:
    """Run ``target(i)`` on ``count`` threads released together; return the results."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count
    failures: list[BaseException] = []

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = target(index)
        except BaseException as error:  # reported below
            failures.append(error)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return results


# --- work for a second process ---------------------------------------------------
# Module-level functions, so that a spawned child process finds them by name.

PROCESS_THREADS = 8
"""Threads each process races with in the two-process tests."""


def race_checkpoints(
    driver: base.StorageDriver, instance_id: str, checkpoint_ids: list[str], label: str
) -> list[tuple[str, bool, bytes]]:
    """Every thread saves every checkpoint id, with a state naming the thread; returns
    (checkpoint id, whether this call stored it, the state it was answered)."""

    def save_all(thread: int) -> list[tuple[str, bool, bytes]]:
        answers = []
        for checkpoint_id in checkpoint_ids:
            state = f"{label}-{thread}".encode()
            outcome = driver.checkpoint(instance_id, checkpoint_id, state, T0)
            answers.append(
                (checkpoint_id, not outcome.found, state if not outcome.found else outcome.state)
            )
        return answers

    return [answer for answers in in_threads(PROCESS_THREADS, save_all) for answer in answers]


def take_custom_signals(
    driver: base.StorageDriver, instance_id: str, checkpoint_ids: list[str]
) -> list[tuple[str, bytes]]:
    """Every thread polls every checkpoint id; returns the custom signals it took."""

    def poll_all(thread: int) -> list[tuple[str, bytes]]:
        taken = []
        for checkpoint_id in checkpoint_ids:
            custom = driver.poll_signals(instance_id, checkpoint_id, T0).custom
            if custom is not None:
                taken.append((checkpoint_id, custom.payload))
        return taken

    return [signal for taken in in_threads(PROCESS_THREADS, poll_all) for signal in taken]


def _child(factory, task: str, args: tuple, ready, start, results) -> None:
    """In a spawned process: build a driver, say ready, run ``task`` when told."""
    try:
        driver = factory()
        try:
            driver.run(lambda tx: tx.count_instances(), write=False)  # connected before the race
            ready.set()
            if not start.wait(120):
                raise TimeoutError("never told to start")
            results.put(("ok", globals()[task](driver, *args)))
        finally:
            driver.close()
    except BaseException:
        results.put(("error", traceback.format_exc()))


def in_two_processes(
    storage: base.StorageDriver,
    factory: Callable[[], base.StorageDriver],
    task: Callable[..., list],
    *args: object,
) -> list:
    """Run ``task(driver, *args)`` here on ``storage`` and, at the same moment, in a
    child process on a driver built by ``factory``; return both results together."""
    context = multiprocessing.get_context("spawn")
    ready, start, results = context.Event(), context.Event(), context.Queue()
    child = context.Process(
        target=_child, args=(factory, task.__name__, args, ready, start, results), daemon=True
    )
    child.start()
    try:
        while not ready.wait(0.1):
            try:
                outcome, detail = results.get_nowait()
            except queue.Empty:
                if not child.is_alive():
                    pytest.fail("the child process ended before it was ready")
                continue
            pytest.fail(f"the child process failed ({outcome}):\n{detail}")
        start.set()
        mine = task(storage, *args)
        outcome, theirs = results.get(timeout=120)
        if outcome != "ok":
            pytest.fail(f"the child process failed:\n{theirs}")
        return mine + theirs
    finally:
        start.set()
        child.join(30)
        if child.is_alive():
            child.kill()


class DriverConformance:
    """Tests every storage driver must pass; provide the ``driver`` fixture (and
    ``driver_factory``, or ``shared_between_processes = False``)."""

    threads = 16
    """How many threads the concurrency tests use (at most the driver's ``workers``)."""

    shared_between_processes = True
    """Whether several processes can use one store at once (each with its own driver);
    if so, the kit proves exactly-once checkpoints and take-once custom signals
    across two processes, with drivers from ``driver_factory``."""

    @pytest.fixture
    def driver(self) -> base.StorageDriver:
        raise NotImplementedError("provide a `driver` fixture yielding a driver on an empty store")

    @pytest.fixture
    def driver_factory(self) -> Callable[[], base.StorageDriver]:
        raise NotImplementedError(
            "provide a `driver_factory` fixture returning a picklable callable that builds "
            "another driver on the store of `driver` (or set shared_between_processes = False)"
        )

    @pytest.fixture
    def storage(self, driver: base.StorageDriver) -> base.StorageDriver:
        driver.migrate()
        return driver

    @pytest.fixture
    def instance(self, storage: base.StorageDriver) -> str:
        storage.run(lambda tx: tx.create_instance("inst", "tenant", T0))
        return "inst"

    # --- driver life cycle ----------------------------------------------------

    def test_migrate_builds_the_schema_from_an_empty_store_once(self, driver):
        applied = driver.migrate()
        assert applied and all(isinstance(name, str) for name in applied)
        assert driver.migrate() == []
        assert driver.run(lambda tx: tx.count_instances(), write=False) == 0

    def test_describe_names_the_store(self, driver):
        assert isinstance(driver.describe(), str) and driver.describe()

    def test_check_passes_on_a_reachable_store(self, storage):
        storage.check()

    def test_url_schemes_are_declared(self, driver):
        assert isinstance(type(driver).url_schemes, tuple)

    # --- transactions ---------------------------------------------------------

    def test_run_returns_the_result_of_the_work(self, storage):
        assert storage.run(lambda tx: tx.create_instance("a", "t", T0)) is True

    def test_a_failing_work_keeps_nothing_and_its_exception_passes_through(self, storage):
        class Refused(Exception):
            pass

        def work(tx):
            tx.create_instance("a", "t", T0)
            tx.insert_checkpoint("a", "cp", b"state", T0)
            raise Refused("no")

        with pytest.raises(Refused):
            storage.run(work)
        assert storage.run(lambda tx: tx.get_instance("a"), write=False) is None

    def test_a_storage_failure_inside_work_keeps_nothing(self, storage):
        def work(tx):
            tx.create_instance("a", "t", T0)
            tx.insert_checkpoint("ghost", "cp", b"", T0)  # no such instance

        with pytest.raises(errors.StorageError):
            storage.run(work)
        assert storage.run(lambda tx: tx.get_instance("a"), write=False) is None

    def test_a_failed_transaction_does_not_disturb_others(self, storage, instance):
        def good(index):
            return storage.run(lambda tx: tx.insert_checkpoint(instance, f"ok-{index}", b"x", T0))

        def bad(index):
            def work(tx):
                tx.insert_checkpoint(instance, f"bad-{index}", b"x", T0)
                raise ValueError("undo me")

            with pytest.raises(ValueError):
                storage.run(work)

        in_threads(self.threads, lambda i: good(i) if i % 2 else bad(i))
        names = {
            c.checkpoint_id
            for c in storage.run(lambda tx: tx.list_checkpoints(instance, limit=100))
        }
        assert names == {f"ok-{i}" for i in range(self.threads) if i % 2}

    def test_read_only_runs_see_committed_data(self, storage, instance):
        storage.run(lambda tx: tx.insert_checkpoint(instance, "cp", b"v", T0))
        got = storage.run(lambda tx: tx.get_checkpoint(instance, "cp"), write=False)
        assert got.state == b"v"

    def test_updates_of_one_instance_are_serialized(self, storage, instance):
        # Each transaction reads a counter and writes it back incremented; the
        # instance lock taken by get_instance makes every increment count.
        def increment(_):
            def work(tx):
                current = tx.get_instance(instance)
                tx.update_instance(instance, InstanceUpdate(error=str(int(current.error or 0) + 1)))

            storage.run(work)

        in_threads(self.threads, increment)
        assert storage.run(lambda tx: tx.get_instance(instance)).error == str(self.threads)

    # --- instances ------------------------------------------------------------

    def test_create_instance_once(self, storage):
        assert storage.run(lambda tx: tx.create_instance("a", "t1", T0)) is True
        assert storage.run(lambda tx: tx.create_instance("a", "t2", at(1))) is False
        instance = storage.run(lambda tx: tx.get_instance("a"))
        assert instance == records.Instance("a", "t1", InstanceStatus.PENDING, created_at=T0)

    def test_concurrent_creation_creates_once(self, storage):
        created = in_threads(
            self.threads, lambda i: storage.run(lambda tx: tx.create_instance("a", "t", T0))
        )
        assert created.count(True) == 1

    def test_unknown_instance_is_none(self, storage):
        assert storage.run(lambda tx: tx.get_instance("nope")) is None

    def test_every_instance_field_round_trips(self, storage, instance):
        update = InstanceUpdate(
            status=InstanceStatus.FAILED,
            checkpoint_id="cp-9",
            started_at=at(1),
            finished_at=at(2.5),
            output=BINARY,
            error="bröken",
            sleep_until=at(3600),
            last_activity_at=at(2.001),
            wake_claimed_until=at(3601),
        )
        storage.run(lambda tx: tx.update_instance(instance, update))
        got = storage.run(lambda tx: tx.get_instance(instance), write=False)
        created = records.Instance(instance, "tenant", InstanceStatus.PENDING, created_at=T0)
        assert got == attrs.evolve(created, **update.changes())
        assert got.created_at.tzinfo is not None and got.created_at.utcoffset() == dt.timedelta(0)

    def test_update_writes_only_the_given_columns_and_none_clears(self, storage, instance):
        storage.run(lambda tx: tx.update_instance(instance, InstanceUpdate(output=b"x", error="e")))
        storage.run(lambda tx: tx.update_instance(instance, InstanceUpdate(error=None)))
        got = storage.run(lambda tx: tx.get_instance(instance))
        assert got.output == b"x" and got.error is None and got.status is InstanceStatus.PENDING

    def test_every_status_is_stored(self, storage, instance):
        for status in InstanceStatus:
            storage.run(lambda tx, s=status: tx.update_instance(instance, InstanceUpdate(status=s)))
            assert storage.run(lambda tx: tx.get_instance(instance)).status is status

    def test_update_of_an_unknown_instance_changes_nothing(self, storage):
        storage.run(
            lambda tx: tx.update_instance("nope", InstanceUpdate(status=InstanceStatus.RUNNING))
        )
        assert storage.run(lambda tx: tx.count_instances()) == 0

    def test_list_instances_filters_orders_and_pages(self, storage):
        def setup(tx):
            for index in range(5):
                tx.create_instance(f"i{index}", "a" if index % 2 == 0 else "b", at(index))
            tx.update_instance("i4", InstanceUpdate(status=InstanceStatus.RUNNING))
            tx.update_instance("i1", InstanceUpdate(status=InstanceStatus.RUNNING))

        storage.run(setup)

        def ids(**filters):
            return [
                i.instance_id
                for i in storage.run(lambda tx: tx.list_instances(**filters), write=False)
            ]

        assert ids() == ["i4", "i3", "i2", "i1", "i0"]
        assert ids(tenant_id="a") == ["i4", "i2", "i0"]
        assert ids(status=InstanceStatus.RUNNING) == ["i4", "i1"]
        assert ids(tenant_id="b", status=InstanceStatus.RUNNING) == ["i1"]
        assert ids(limit=2, offset=1) == ["i3", "i2"]
        assert ids(offset=10) == []
        count = storage.run(lambda tx: tx.count_instances(tenant_id="a"), write=False)
        assert count == 3
        assert storage.run(lambda tx: tx.count_instances(status=InstanceStatus.RUNNING)) == 2

    def sleeping(self, storage, instance_id, wakes_at, status=None):
        def setup(tx):
            tx.create_instance(instance_id, "tenant", T0)
            tx.update_instance(
                instance_id,
                InstanceUpdate(status=status or InstanceStatus.SUSPENDED, sleep_until=wakes_at),
            )

        storage.run(setup)

    def test_due_sleepers_are_listed_oldest_first(self, storage):
        self.sleeping(storage, "late", at(30))
        self.sleeping(storage, "early", at(10))
        self.sleeping(storage, "future", at(500))
        self.sleeping(storage, "middle", at(20))
        self.sleeping(storage, "running", at(1), status=InstanceStatus.RUNNING)
        storage.run(lambda tx: tx.create_instance("awake", "tenant", T0))

        def due(limit):
            found = storage.run(
                lambda tx: tx.list_due_sleepers(due_before=at(100), limit=limit), write=False
            )
            return [i.instance_id for i in found]

        assert due(2) == ["early", "middle"]
        assert due(10) == ["early", "middle", "late"]
        got = storage.run(lambda tx: tx.list_due_sleepers(due_before=at(10), limit=10))
        assert got == [self.status(storage, "early")]

    def test_stale_instances_are_running_ones_without_recent_activity(self, storage):
        def setup(tx):
            for name, status, started, active in (
                ("quiet", InstanceStatus.RUNNING, at(0), at(10)),
                ("never-active", InstanceStatus.RUNNING, at(5), None),
                ("busy", InstanceStatus.RUNNING, at(0), at(100)),
                ("sleeping", InstanceStatus.SUSPENDED, at(0), at(1)),
                ("done", InstanceStatus.COMPLETED, at(0), at(1)),
            ):
                tx.create_instance(name, "tenant", T0)
                tx.update_instance(
                    name, InstanceUpdate(status=status, started_at=started, last_activity_at=active)
                )

        storage.run(setup)
        stale = storage.run(lambda tx: tx.list_stale_instances(at(50), 10), write=False)
        assert [i.instance_id for i in stale] == ["never-active", "quiet"]
        assert len(storage.run(lambda tx: tx.list_stale_instances(at(50), 1))) == 1

    def test_finished_instances_are_listed_by_finish_time(self, storage):
        def setup(tx):
            for name, status, finished in (
                ("old-done", InstanceStatus.COMPLETED, at(10)),
                ("old-failed", InstanceStatus.FAILED, at(5)),
                ("old-cancelled", InstanceStatus.CANCELLED, at(20)),
                ("recent", InstanceStatus.COMPLETED, at(500)),
                ("running", InstanceStatus.RUNNING, at(1)),
            ):
                tx.create_instance(name, "tenant", T0)
                tx.update_instance(name, InstanceUpdate(status=status, finished_at=finished))

        storage.run(setup)
        listed = storage.run(lambda tx: tx.list_finished_before(at(100), 10), write=False)
        assert listed == ["old-failed", "old-done", "old-cancelled"]
        assert storage.run(lambda tx: tx.list_finished_before(at(100), 2)) == [
            "old-failed",
            "old-done",
        ]

    def test_deleting_an_instance_removes_everything_it_owns(self, storage, instance):
        def setup(tx):
            tx.create_instance("neighbour", "tenant", T0)
            for owner in (instance, "neighbour"):
                tx.insert_checkpoint(owner, "cp", b"x", T0)
                tx.save_retry_attempt(owner, "cp", 2, "e", T0)
                tx.insert_event(self.event(owner))
                tx.put_signal(owner, SignalType.PAUSE, b"", T0)
                tx.put_custom_signal(owner, "cp", b"", T0)

        storage.run(setup)
        assert storage.run(lambda tx: tx.delete_instance(instance)) is True
        assert storage.run(lambda tx: tx.delete_instance(instance)) is False

        def remains(tx, owner):
            return (
                tx.get_instance(owner) is not None,
                tx.count_checkpoints(owner),
                tx.count_events(owner),
                tx.get_pending_signal(owner) is not None,
                len(tx.list_custom_signals(owner)),
            )

        assert storage.run(lambda tx: remains(tx, instance)) == (False, 0, 0, False, 0)
        assert storage.run(lambda tx: remains(tx, "neighbour")) == (True, 2, 1, True, 1)
        # the id is free again, with nothing left over
        storage.run(lambda tx: tx.create_instance(instance, "tenant", T0))
        assert storage.run(lambda tx: tx.insert_checkpoint(instance, "cp", b"new", T0)) is True

    # --- checkpoints ----------------------------------------------------------

    def test_checkpoint_is_stored_once_and_never_replaced(self, storage, instance):
        assert storage.run(lambda tx: tx.insert_checkpoint(instance, "cp", b"first", T0)) is True
        assert (
            storage.run(lambda tx: tx.insert_checkpoint(instance, "cp", b"second", at(1))) is False
        )
        got = storage.run(lambda tx: tx.get_checkpoint(instance, "cp"))
        assert got == records.Checkpoint(instance, "cp", b"first", T0)

    def test_concurrent_first_checkpoints_store_exactly_one_state(self, storage, instance):
        def race(index):
            def work(tx):
                inserted = tx.insert_checkpoint(instance, "race", f"state-{index}".encode(), T0)
                return inserted, tx.get_checkpoint(instance, "race").state

            return storage.run(work)

        results = in_threads(self.threads, race)
        winners = [index for index, (inserted, _) in enumerate(results) if inserted]
        assert len(winners) == 1
        stored = f"state-{winners[0]}".encode()
        assert {state for _, state in results} == {stored}
        assert storage.run(lambda tx: tx.get_checkpoint(instance, "race")).state == stored

    def test_checkpoints_are_per_instance(self, storage, instance):
        storage.run(lambda tx: tx.create_instance("other", "tenant", T0))
        storage.run(lambda tx: tx.insert_checkpoint(instance, "cp", b"mine", T0))
        assert storage.run(lambda tx: tx.get_checkpoint("other", "cp")) is None
        assert storage.run(lambda tx: tx.insert_checkpoint("other", "cp", b"theirs", T0)) is True
        assert storage.run(lambda tx: tx.get_checkpoint(instance, "cp")).state == b"mine"

    @pytest.mark.parametrize(
        "state",
        [b"", b"x", BINARY, bytes(range(256)) * 4096],
        ids=["empty", "one-byte", "non-utf8", "one-mib"],
    )
    def test_states_round_trip_exactly(self, storage, instance, state):
        storage.run(lambda tx: tx.insert_checkpoint(instance, "cp", state, T0))
        assert storage.run(lambda tx: tx.get_checkpoint(instance, "cp"), write=False).state == state

    def test_a_state_at_the_frame_limit_round_trips(self, storage, instance):
        state = bytes(range(256)) * (64 * 1024 * 1024 // 256 - 64)  # 64 MiB minus request overhead
        storage.run(lambda tx: tx.insert_checkpoint(instance, "huge", state, T0))
        got = storage.run(lambda tx: tx.get_checkpoint(instance, "huge"), write=False)
        assert len(got.state) == len(state) and got.state == state
        info = storage.run(lambda tx: tx.list_checkpoints(instance), write=False)
        assert info[0].size == len(state)

    def test_empty_checkpoint_id_is_an_ordinary_id(self, storage, instance):
        storage.run(lambda tx: tx.insert_checkpoint(instance, "", b"blank", T0))
        assert storage.run(lambda tx: tx.get_checkpoint(instance, "")).state == b"blank"

    def test_checkpoint_of_an_unknown_instance_is_a_storage_error(self, storage):
        with pytest.raises(errors.StorageError):
            storage.run(lambda tx: tx.insert_checkpoint("nope", "cp", b"", T0))

    def test_retry_attempts_are_checkpoint_rows_replaced_on_repeat(self, storage, instance):
        storage.run(lambda tx: tx.save_retry_attempt(instance, "durable::f::1", 2, "boom", T0))
        storage.run(lambda tx: tx.save_retry_attempt(instance, "durable::f::1", 3, None, at(1)))
        storage.run(lambda tx: tx.save_retry_attempt(instance, "durable::f::1", 2, "again", at(2)))
        second = storage.run(lambda tx: tx.get_checkpoint(instance, "durable::f::1::retry::2"))
        assert second.state == b"again" and second.created_at == at(2)
        assert (
            storage.run(lambda tx: tx.get_checkpoint(instance, "durable::f::1::retry::3")).state
            == b""
        )
        with pytest.raises(errors.StorageError):
            storage.run(lambda tx: tx.save_retry_attempt("nope", "c", 2, None, T0))

    def test_list_checkpoints_filters_orders_and_pages(self, storage, instance):
        def setup(tx):
            for index in range(4):
                tx.insert_checkpoint(instance, f"cp{index}", b"x" * index, at(index))
            tx.insert_checkpoint(instance, "same-time", b"", at(3))

        storage.run(setup)

        def listing(**filters):
            wanted = records.CheckpointFilter(
                **{k: v for k, v in filters.items() if k not in ("limit", "offset")}
            )
            paging = {k: v for k, v in filters.items() if k in ("limit", "offset")}
            return storage.run(
                lambda tx: tx.list_checkpoints(instance, wanted, **paging), write=False
            )

        assert [c.checkpoint_id for c in listing()] == ["same-time", "cp3", "cp2", "cp1", "cp0"]
        assert [(c.checkpoint_id, c.size, c.created_at) for c in listing(checkpoint_id="cp2")] == [
            ("cp2", 2, at(2))
        ]
        assert [c.checkpoint_id for c in listing(created_after=at(1), created_before=at(3))] == [
            "cp2",
            "cp1",
        ]
        assert [c.checkpoint_id for c in listing(limit=2, offset=2)] == ["cp2", "cp1"]
        assert all(c.instance_id == instance for c in listing())
        assert storage.run(lambda tx: tx.count_checkpoints(instance)) == 5
        after_two = records.CheckpointFilter(created_after=at(2))
        assert storage.run(lambda tx: tx.count_checkpoints(instance, after_two)) == 3
        nope = records.CheckpointFilter(checkpoint_id="nope")
        assert storage.run(lambda tx: tx.count_checkpoints(instance, nope)) == 0
        assert storage.run(lambda tx: tx.list_checkpoints("nope")) == []

    # --- events ---------------------------------------------------------------

    def event(self, instance, kind=records.EventType.CUSTOM, seconds=0.0, **fields):
        return records.Event(
            instance_id=instance, event_type=kind, created_at=at(seconds), **fields
        )

    def test_events_get_increasing_ids_and_round_trip(self, storage, instance):
        first = storage.run(
            lambda tx: tx.insert_event(self.event(instance, records.EventType.STARTED))
        )
        second = storage.run(
            lambda tx: tx.insert_event(
                self.event(
                    instance, seconds=1, checkpoint_id="cp", payload=BINARY, subtype="progress"
                )
            )
        )
        assert second > first
        newest, oldest = storage.run(lambda tx: tx.list_events(instance), write=False)
        assert newest == self.event(
            instance, seconds=1, checkpoint_id="cp", payload=BINARY, subtype="progress", id=second
        )
        assert oldest == self.event(instance, records.EventType.STARTED, id=first)

    def test_every_event_type_is_stored(self, storage, instance):
        for kind in records.EventType:
            storage.run(lambda tx, k=kind: tx.insert_event(self.event(instance, k)))
        stored = {e.event_type for e in storage.run(lambda tx: tx.list_events(instance))}
        assert stored == set(records.EventType)

    def test_list_events_filters_orders_and_pages(self, storage, instance):
        def setup(tx):
            tx.insert_event(self.event(instance, records.EventType.HEARTBEAT, 0))
            tx.insert_event(self.event(instance, seconds=1, subtype="a", payload=b'{"Order": 17}'))
            tx.insert_event(self.event(instance, seconds=2, subtype="b", payload=BINARY))
            tx.insert_event(self.event(instance, seconds=2, subtype="a", payload=b"ORDER shipped"))

        storage.run(setup)

        def subtypes(event_filter=records.ALL_EVENTS, **paging):
            events = storage.run(
                lambda tx: tx.list_events(instance, event_filter, **paging), write=False
            )
            return [e.subtype for e in events]

        assert subtypes() == ["a", "b", "a", None]
        assert subtypes(records.EventFilter(event_type=records.EventType.CUSTOM)) == ["a", "b", "a"]
        assert subtypes(records.EventFilter(subtype="a")) == ["a", "a"]
        assert subtypes(records.EventFilter(created_after=at(1), created_before=at(2))) == ["a"]
        assert subtypes(records.EventFilter(payload_contains="order")) == ["a", "a"]
        assert subtypes(records.EventFilter(payload_contains="SHIPPED", subtype="a")) == ["a"]
        assert subtypes(records.EventFilter(payload_contains="%")) == []
        assert subtypes(limit=2, offset=1) == ["b", "a"]
        count = storage.run(lambda tx: tx.count_events(instance, records.EventFilter(subtype="a")))
        assert count == 2
        assert storage.run(lambda tx: tx.count_events(instance)) == 4

    def test_event_of_an_unknown_instance_is_a_storage_error(self, storage):
        with pytest.raises(errors.StorageError):
            storage.run(lambda tx: tx.insert_event(self.event("nope")))

    # --- signals --------------------------------------------------------------

    def test_signal_is_pending_until_acknowledged_by_its_type(self, storage, instance):
        assert storage.run(lambda tx: tx.get_pending_signal(instance)) is None
        storage.run(lambda tx: tx.put_signal(instance, SignalType.PAUSE, BINARY, T0))
        assert storage.run(lambda tx: tx.get_pending_signal(instance)) == records.Signal(
            instance, SignalType.PAUSE, BINARY, T0
        )
        assert (
            storage.run(lambda tx: tx.acknowledge_signal(instance, SignalType.CANCEL, at(1)))
            is False
        )
        assert storage.run(lambda tx: tx.get_pending_signal(instance)) is not None
        assert (
            storage.run(lambda tx: tx.acknowledge_signal(instance, SignalType.PAUSE, at(1))) is True
        )
        assert storage.run(lambda tx: tx.get_pending_signal(instance)) is None
        assert (
            storage.run(lambda tx: tx.acknowledge_signal(instance, SignalType.PAUSE, at(2)))
            is False
        )

    def test_a_new_signal_replaces_the_old_and_re_arms(self, storage, instance):
        storage.run(lambda tx: tx.put_signal(instance, SignalType.PAUSE, b"p", T0))
        storage.run(lambda tx: tx.acknowledge_signal(instance, SignalType.PAUSE, at(1)))
        storage.run(lambda tx: tx.put_signal(instance, SignalType.RESUME, b"", at(2)))
        assert storage.run(lambda tx: tx.get_pending_signal(instance)) == records.Signal(
            instance, SignalType.RESUME, b"", at(2)
        )
        storage.run(lambda tx: tx.put_signal(instance, SignalType.CANCEL, b"c", at(3)))
        assert (
            storage.run(lambda tx: tx.get_pending_signal(instance)).signal_type is SignalType.CANCEL
        )

    def test_signal_of_an_unknown_instance(self, storage):
        with pytest.raises(errors.StorageError):
            storage.run(lambda tx: tx.put_signal("nope", SignalType.CANCEL, b"", T0))
        assert storage.run(lambda tx: tx.get_pending_signal("nope")) is None
        assert storage.run(lambda tx: tx.acknowledge_signal("nope", SignalType.CANCEL, T0)) is False

    def test_custom_signal_is_taken_once_and_replaced_until_taken(self, storage, instance):
        storage.run(lambda tx: tx.put_custom_signal(instance, "approve", b"old", T0))
        storage.run(lambda tx: tx.put_custom_signal(instance, "approve", BINARY, at(1)))
        storage.run(lambda tx: tx.put_custom_signal(instance, "other", b"", at(2)))
        assert storage.run(lambda tx: tx.list_custom_signals(instance), write=False) == [
            records.CustomSignal(instance, "approve", BINARY, at(1)),
            records.CustomSignal(instance, "other", b"", at(2)),
        ]
        taken = storage.run(lambda tx: tx.take_custom_signal(instance, "approve"))
        assert taken == records.CustomSignal(instance, "approve", BINARY, at(1))
        assert storage.run(lambda tx: tx.take_custom_signal(instance, "approve")) is None
        assert [
            s.checkpoint_id for s in storage.run(lambda tx: tx.list_custom_signals(instance))
        ] == ["other"]

    def test_concurrent_takes_of_a_custom_signal_take_it_once(self, storage, instance):
        storage.run(lambda tx: tx.put_custom_signal(instance, "once", b"payload", T0))
        taken = in_threads(
            self.threads, lambda i: storage.run(lambda tx: tx.take_custom_signal(instance, "once"))
        )
        assert [signal.payload for signal in taken if signal is not None] == [b"payload"]

    def test_custom_signal_of_an_unknown_instance(self, storage):
        with pytest.raises(errors.StorageError):
            storage.run(lambda tx: tx.put_custom_signal("nope", "cp", b"", T0))
        assert storage.run(lambda tx: tx.take_custom_signal("nope", "cp")) is None
        assert storage.run(lambda tx: tx.list_custom_signals("nope")) == []

    # --- the re-run rule ------------------------------------------------------

    def test_work_runs_exactly_once_per_call(self, storage):
        class Refused(Exception):
            pass

        rounds = 3
        runs = [0] * (self.threads * rounds)

        def call(index: int) -> object:
            def work(tx):
                runs[index] += 1
                tx.create_instance(f"once-{index}", "tenant", T0)
                tx.insert_checkpoint(f"once-{index}", "cp", b"written", T0)
                if index % 2:
                    raise Refused(index)
                return index

            try:
                return storage.run(work)
            except Refused:
                return "refused"

        results = []
        for round_number in range(rounds):
            offset = round_number * self.threads
            results += in_threads(self.threads, lambda i, offset=offset: call(offset + i))
        assert runs == [1] * len(runs)
        assert results == [index if index % 2 == 0 else "refused" for index in range(len(runs))]
        stored = storage.run(lambda tx: tx.list_instances(limit=len(runs)), write=False)
        assert {i.instance_id for i in stored} == {
            f"once-{index}" for index in range(len(runs)) if index % 2 == 0
        }
        for index in (0, 1):
            got = storage.run(lambda tx, i=index: tx.get_checkpoint(f"once-{i}", "cp"))
            assert (got is not None) == (index % 2 == 0)

    # --- the operations -------------------------------------------------------
    # The driver's operation methods, held to the rules of runtara.storage.operations.

    def registered(self, storage, instance_id="op", tenant_id="tenant", now=T0):
        storage.register_instance(instance_id, tenant_id, None, now)
        return instance_id

    def status(self, storage, instance_id):
        return storage.run(lambda tx: tx.get_instance(instance_id), write=False)

    def test_register_runs_a_new_instance_and_records_started(self, storage):
        storage.register_instance("new", "tenant", None, at(1))
        got = self.status(storage, "new")
        assert got.status is InstanceStatus.RUNNING
        assert got.started_at == at(1) and got.last_activity_at == at(1)
        events = storage.run(lambda tx: tx.list_events("new"), write=False)
        assert [(e.event_type, e.created_at) for e in events] == [(EventType.STARTED, at(1))]

    def test_register_refusals(self, storage):
        instance = self.registered(storage)
        with pytest.raises(errors.RegistrationRefused, match="tenant"):
            storage.register_instance(instance, "another tenant", None, at(1))
        with pytest.raises(errors.RegistrationRefused, match="not found"):
            storage.register_instance(instance, "tenant", "no-such-checkpoint", at(1))
        with pytest.raises(errors.RegistrationRefused, match="not found"):
            storage.register_instance("brand-new", "tenant", "no-such-checkpoint", at(1))
        assert self.status(storage, "brand-new") is None
        storage.record_event(instance, EventType.COMPLETED, b"done", at(2))
        with pytest.raises(errors.RegistrationRefused, match="completed"):
            storage.register_instance(instance, "tenant", None, at(3))
        assert self.status(storage, instance).status is InstanceStatus.COMPLETED

    def test_registering_again_keeps_the_number_and_a_superseded_one_is_refused(self, storage):
        assert storage.register_instance("again", "tenant", None, at(1)) == 1
        storage.begin_sleep("again", dt.timedelta(seconds=5), "", b"", at(2), registration=1)
        # the process holding registration 1 registers again: it keeps its number
        assert storage.register_instance("again", "tenant", None, at(3), registration=1) == 1
        assert self.status(storage, "again").status is InstanceStatus.RUNNING
        assert storage.register_instance("again", "tenant", None, at(4)) == 2  # another process
        with pytest.raises(errors.Superseded):
            storage.register_instance("again", "tenant", None, at(5), registration=1)
        got = self.status(storage, "again")
        assert (got.registration, got.last_activity_at) == (2, at(4))
        started = storage.run(
            lambda tx: tx.list_events("again", records.EventFilter(event_type=EventType.STARTED))
        )
        assert len(started) == 3

    def test_register_resumes_from_an_existing_checkpoint(self, storage):
        instance = self.registered(storage)
        storage.checkpoint(instance, "step-1", b"s1", at(1))
        storage.register_instance(instance, "tenant", "step-1", at(2))
        got = self.status(storage, instance)
        assert got.status is InstanceStatus.RUNNING and got.started_at == at(2)

    def test_checkpoint_saves_once_and_answers_the_stored_state(self, storage):
        instance = self.registered(storage)
        first = storage.checkpoint(instance, "cp", b"first", at(1))
        assert (first.found, first.state) == (False, b"")
        again = storage.checkpoint(instance, "cp", b"second", at(2))
        assert (again.found, again.state) == (True, b"first")
        got = self.status(storage, instance)
        assert got.checkpoint_id == "cp" and got.last_activity_at == at(2)
        assert storage.get_checkpoint(instance, "cp", at(3)) == b"first"
        assert storage.get_checkpoint(instance, "other", at(3)) is None

    def test_checkpoint_needs_a_running_instance(self, storage):
        with pytest.raises(errors.InstanceNotFound):
            storage.checkpoint("ghost", "cp", b"x", T0)
        storage.run(lambda tx: tx.create_instance("pending", "tenant", T0))
        with pytest.raises(errors.InvalidInstanceState):
            storage.checkpoint("pending", "cp", b"x", T0)
        assert storage.run(lambda tx: tx.get_checkpoint("pending", "cp")) is None

    def test_checkpoint_reports_the_pending_signal_and_takes_its_custom_signal(self, storage):
        instance = self.registered(storage)
        storage.run(lambda tx: tx.put_signal(instance, SignalType.PAUSE, b"p", T0))
        storage.run(lambda tx: tx.put_custom_signal(instance, "cp", b"for-cp", T0))
        outcome = storage.checkpoint(instance, "cp", b"x", at(1))
        assert outcome.signals.pending.signal_type is SignalType.PAUSE
        assert outcome.signals.custom.payload == b"for-cp"
        assert storage.checkpoint(instance, "cp", b"x", at(2)).signals.custom is None

    def test_begin_and_finish_sleep(self, storage):
        instance = self.registered(storage)
        until = storage.begin_sleep(
            instance, dt.timedelta(seconds=5, microseconds=1500), "before-sleep", b"s", at(1)
        )
        assert until == at(6.001)
        got = self.status(storage, instance)
        assert got.status is InstanceStatus.SUSPENDED and got.sleep_until == until
        assert got.checkpoint_id == "before-sleep"
        assert storage.get_checkpoint(instance, "before-sleep", at(2)) == b"s"
        with pytest.raises(errors.InvalidInstanceState):
            storage.begin_sleep(instance, dt.timedelta(seconds=1), "", b"", at(2))
        storage.finish_sleep(instance, at(99), at(7))  # another sleep: not this one's to end
        assert self.status(storage, instance).status is InstanceStatus.SUSPENDED
        storage.finish_sleep(instance, until, at(7))
        got = self.status(storage, instance)
        assert got.status is InstanceStatus.RUNNING and got.sleep_until is None

    def test_final_events_are_final(self, storage):
        instance = self.registered(storage)
        storage.record_event(instance, EventType.COMPLETED, b"output", at(1))
        got = self.status(storage, instance)
        assert got.status is InstanceStatus.COMPLETED
        assert (got.output, got.finished_at) == (b"output", at(1))
        storage.record_event(instance, EventType.COMPLETED, b"output", at(2))  # exact repeat
        for kind, payload in (
            (EventType.COMPLETED, b"other output"),
            (EventType.FAILED, b"late failure"),
            (EventType.SUSPENDED, b""),
        ):
            with pytest.raises(errors.InstanceFinished):
                storage.record_event(instance, kind, payload, at(3))
        storage.record_event(instance, EventType.HEARTBEAT, b"", at(4))
        got = self.status(storage, instance)
        assert got.status is InstanceStatus.COMPLETED and got.output == b"output"
        kinds = [e.event_type for e in storage.run(lambda tx: tx.list_events(instance))]
        assert kinds == [EventType.HEARTBEAT, EventType.COMPLETED, EventType.STARTED]

    def test_failed_and_suspended_events_change_the_status(self, storage):
        failing = self.registered(storage, "failing")
        storage.record_event(failing, EventType.FAILED, b"it broke", at(1))
        got = self.status(storage, failing)
        assert (got.status, got.error, got.finished_at) == (
            InstanceStatus.FAILED,
            "it broke",
            at(1),
        )
        pausing = self.registered(storage, "pausing")
        storage.record_event(pausing, EventType.SUSPENDED, b"", at(1), checkpoint_id="cp")
        assert self.status(storage, pausing).status is InstanceStatus.SUSPENDED
        with pytest.raises(errors.InstanceNotFound):
            storage.record_event("ghost", EventType.HEARTBEAT, b"", at(1))

    def test_poll_signals_reports_and_takes(self, storage):
        assert storage.poll_signals("ghost", "cp", T0) == records.Signals()
        instance = self.registered(storage)
        storage.run(lambda tx: tx.put_signal(instance, SignalType.CANCEL, b"c", T0))
        storage.run(lambda tx: tx.put_custom_signal(instance, "approve", b"yes", T0))
        polled = storage.poll_signals(instance, "approve", at(1))
        assert polled.pending.signal_type is SignalType.CANCEL
        assert polled.custom.payload == b"yes"
        again = storage.poll_signals(instance, "approve", at(2))
        assert again.pending is not None and again.custom is None
        assert storage.poll_signals(instance, None, at(3)).custom is None
        assert self.status(storage, instance).last_activity_at == at(3)

    def test_acknowledging_a_cancel_cancels_and_other_acks_only_mark(self, storage):
        pausing = self.registered(storage, "pausing")
        storage.run(lambda tx: tx.put_signal(pausing, SignalType.PAUSE, b"", T0))
        storage.acknowledge_signal(pausing, SignalType.PAUSE, False, at(1))
        assert storage.poll_signals(pausing, None, at(1)).pending is not None
        storage.acknowledge_signal(pausing, SignalType.PAUSE, True, at(2))
        assert storage.poll_signals(pausing, None, at(2)).pending is None
        assert self.status(storage, pausing).status is InstanceStatus.RUNNING
        cancelling = self.registered(storage, "cancelling")
        storage.run(lambda tx: tx.put_signal(cancelling, SignalType.CANCEL, b"", T0))
        storage.acknowledge_signal(cancelling, SignalType.CANCEL, True, at(3))
        got = self.status(storage, cancelling)
        assert (got.status, got.finished_at) == (InstanceStatus.CANCELLED, at(3))
        with pytest.raises(errors.InstanceNotFound):
            storage.acknowledge_signal("ghost", SignalType.CANCEL, True, at(4))

    def test_record_retry_stores_each_attempt_once(self, storage):
        instance = self.registered(storage)
        storage.record_retry(instance, "step", 1, "first error", at(1))
        storage.record_retry(instance, "step", 1, "same attempt again", at(2))
        storage.record_retry(instance, "step", 2, None, at(3))
        assert storage.get_checkpoint(instance, "step::retry::1", at(4)) == b"same attempt again"
        assert storage.get_checkpoint(instance, "step::retry::2", at(4)) == b""
        with pytest.raises(errors.InstanceNotFound):
            storage.record_retry("ghost", "step", 1, None, at(5))

    def test_a_custom_signal_too_large_to_deliver_is_refused_when_sent(self, storage):
        instance = self.registered(storage)
        too_large = bytes(limits.MAX_FRAME_SIZE)
        with pytest.raises(errors.OperationRefused, match="could never be delivered"):
            storage.run(lambda tx: operations.send_custom_signal(tx, instance, "cp", too_large, T0))
        assert storage.run(lambda tx: tx.list_custom_signals(instance), write=False) == []
        storage.run(lambda tx: operations.send_custom_signal(tx, instance, "cp", b"fits", T0))
        assert storage.poll_signals(instance, "cp", at(1)).custom.payload == b"fits"

    # --- registrations and launches -----------------------------------------------

    def test_each_registration_gets_the_next_number_and_old_ones_are_refused(self, storage):
        assert storage.register_instance("fenced", "tenant", None, T0) == 1
        storage.checkpoint("fenced", "a", b"", at(1), registration=1)
        assert storage.register_instance("fenced", "tenant", None, at(2)) == 2
        assert self.status(storage, "fenced").registration == 2
        for call in (
            lambda: storage.checkpoint("fenced", "b", b"", at(3), registration=1),
            lambda: storage.record_event("fenced", EventType.COMPLETED, b"", at(3), registration=1),
            lambda: storage.poll_signals("fenced", "b", at(3), registration=1),
            lambda: storage.acknowledge_signal(
                "fenced", SignalType.CANCEL, True, at(3), registration=1
            ),
            lambda: storage.record_retry("fenced", "b", 2, "e", at(3), registration=1),
            lambda: storage.begin_sleep(
                "fenced", dt.timedelta(seconds=1), "", b"", at(3), registration=1
            ),
        ):
            with pytest.raises(errors.Superseded):
                call()
        assert self.status(storage, "fenced").status is InstanceStatus.RUNNING
        assert not storage.checkpoint("fenced", "b", b"", at(4), registration=2).found

    def launch(self, instance_id, **fields):
        return records.Launch(instance_id, '{"command": ["x"]}', b"in", 3, **fields)

    def test_launches_round_trip_and_update(self, storage, instance):
        storage.run(lambda tx: tx.insert_launch(self.launch(instance, next_launch_at=at(1))))
        got = storage.run(lambda tx: tx.get_launch(instance), write=False)
        assert got == self.launch(instance, next_launch_at=at(1))
        update = records.LaunchUpdate(
            spec='{"command": ["y"]}',
            input=None,
            attempt=2,
            failures=1,
            resumed_from="step-1",
            launched_at=at(8),
            next_launch_at=None,
            claimed_by="launcher-1",
            claimed_until=at(9),
            pid=123,
            pid_started=2**40,
            host="box",
            registration=5,
            stop_deadline=at(30),
            last_exit="killed by SIGKILL",
        )
        assert storage.run(lambda tx: tx.update_launch(instance, update))
        expected = records.Launch(instance, max_failures=3, **update.changes())
        assert storage.run(lambda tx: tx.get_launch(instance)) == expected
        assert storage.run(lambda tx: tx.get_launch("nope")) is None
        assert not storage.run(lambda tx: tx.update_launch("nope", update))
        with pytest.raises(errors.StorageError):
            storage.run(lambda tx: tx.insert_launch(self.launch("nope")))

    def test_a_held_update_is_a_compare_and_set_on_the_holder(self, storage, instance):
        storage.run(lambda tx: tx.insert_launch(self.launch(instance)))
        take = records.LaunchUpdate(claimed_by="me", attempt=1)
        unclaimed = records.LaunchHolder(None, 0)
        assert storage.run(lambda tx: tx.update_launch(instance, take, held_by=unclaimed))
        # the holder moved on: the same condition no longer holds
        assert not storage.run(lambda tx: tx.update_launch(instance, take, held_by=unclaimed))
        for stale in (records.LaunchHolder("me", 0), records.LaunchHolder("them", 1)):
            assert not storage.run(
                lambda tx, held=stale: tx.update_launch(
                    instance, records.LaunchUpdate(pid=9), held_by=held
                )
            )
        release = records.LaunchUpdate(claimed_by=None, last_exit="done")
        held = records.LaunchHolder("me", 1)
        assert storage.run(lambda tx: tx.update_launch(instance, release, held_by=held))
        got = storage.run(lambda tx: tx.get_launch(instance))
        assert (got.claimed_by, got.attempt, got.pid, got.last_exit) == (None, 1, None, "done")

    def test_due_launches_are_listed_earliest_first(self, storage):
        def setup(tx):
            for name, due, claimed_until in (
                ("late", at(30), None),
                ("early", at(10), None),
                ("future", at(500), None),
                ("held", at(5), at(200)),
                ("lapsed", at(20), at(50)),
                ("waiting", None, None),
            ):
                tx.create_instance(name, "tenant", T0)
                tx.insert_launch(self.launch(name, next_launch_at=due))
                if claimed_until is not None:
                    tx.update_launch(name, records.LaunchUpdate(claimed_until=claimed_until))

        storage.run(setup)

        def due(limit):
            return storage.run(lambda tx: tx.list_due_launches(now=at(100), limit=limit))

        assert due(2) == ["early", "lapsed"]
        assert due(10) == ["early", "lapsed", "late"]

    def test_concurrent_claims_never_share_a_launch(self, storage):
        def setup(tx):
            for index in range(40):
                tx.create_instance(f"l{index:02}", "tenant", T0)
                tx.insert_launch(self.launch(f"l{index:02}", next_launch_at=at(index)))

        storage.run(setup)
        lease = dt.timedelta(seconds=60)

        def claim(index):
            found = []
            while batch := storage.run(
                lambda tx: launches.claim(tx, f"c{index}", at(100), lease, 3)
            ):
                found += [launch.instance_id for launch, _ in batch]
            return found

        claimed = [name for batch in in_threads(self.threads, claim) for name in batch]
        assert sorted(claimed) == [f"l{index:02}" for index in range(40)]
        for index in range(40):
            got = storage.run(lambda tx, i=index: tx.get_launch(f"l{i:02}"))
            assert got.attempt == 1 and got.next_launch_at is None

    def test_concurrent_first_registrations_get_different_numbers(self, storage):
        numbers = in_threads(
            self.threads,
            lambda index: storage.register_instance("raced", "tenant", None, at(index)),
        )
        assert sorted(numbers) == list(range(1, self.threads + 1))
        assert self.status(storage, "raced").registration == self.threads

    def test_lapsed_and_claimed_launches(self, storage):
        def setup(tx):
            for name, status, claimed_by, claimed_until, due, wakes in (
                ("mine", InstanceStatus.RUNNING, "me", at(10), None, None),
                ("theirs", InstanceStatus.RUNNING, "them", at(100), None, None),
                ("unwatched", InstanceStatus.RUNNING, None, None, None, None),
                ("due", InstanceStatus.PENDING, None, None, at(5), None),
                ("paused", InstanceStatus.SUSPENDED, None, None, None, None),
                ("asleep", InstanceStatus.SUSPENDED, None, None, None, at(50)),
                ("awoken", InstanceStatus.SUSPENDED, None, None, None, at(15)),
                ("done", InstanceStatus.COMPLETED, "me", at(10), None, None),
            ):
                tx.create_instance(name, "tenant", T0)
                tx.update_instance(name, InstanceUpdate(status=status, sleep_until=wakes))
                tx.insert_launch(self.launch(name, next_launch_at=due))
                tx.update_launch(
                    name, records.LaunchUpdate(claimed_by=claimed_by, claimed_until=claimed_until)
                )

        storage.run(setup)

        def lapsed(now, due_before=T0):
            found = storage.run(
                lambda tx: tx.list_lapsed_launches(now=now, due_before=due_before, limit=10),
                write=False,
            )
            return [launch.instance_id for launch in found]

        # a finished instance's lapsed claim too: its end is still to be recorded
        assert lapsed(at(20)) == ["done", "mine", "unwatched"]
        assert lapsed(at(20), due_before=at(20)) == ["awoken", "done", "mine", "unwatched"]
        assert lapsed(at(100)) == ["done", "mine", "theirs", "unwatched"]

        def claimed(launcher):
            found = storage.run(
                lambda tx: tx.list_claimed_launches(claimed_by=launcher, limit=10), write=False
            )
            return [launch.instance_id for launch in found]

        assert claimed("me") == ["done", "mine"]
        assert claimed("them") == ["theirs"]
        assert claimed("nobody") == []

    def test_deleting_an_instance_removes_its_launch(self, storage, instance):
        storage.run(lambda tx: tx.insert_launch(self.launch(instance)))
        storage.run(lambda tx: tx.delete_instance(instance))
        assert storage.run(lambda tx: tx.get_launch(instance)) is None

    def test_launched_sleepers_are_left_to_their_launcher(self, storage):
        self.sleeping(storage, "launched", at(10))
        self.sleeping(storage, "plain", at(20))
        storage.run(lambda tx: tx.insert_launch(self.launch("launched")))
        due = storage.run(lambda tx: tx.list_due_sleepers(due_before=at(100), limit=10))
        assert [i.instance_id for i in due] == ["plain"]

    def test_a_fork_copies_the_checkpoints_saved_up_to_one_and_names_its_origin(self, storage):
        storage.run(
            lambda tx: launches.start_instance(
                tx, "src", "t", '{"command": ["x"]}', b"in", 4, at(0), queue="q", key="k"
            )
        )
        storage.register_instance("src", "t", None, at(1))
        # "b" is saved before "a" at the same time: the order they were saved in counts
        for name, when in (("z", 2), ("b", 3), ("a", 3), ("c", 4), ("d", 5)):
            storage.checkpoint("src", name, name.encode() * 3, at(when))
        storage.record_event("src", records.EventType.FAILED, b"boom", at(6))
        before = storage.run(lambda tx: tx.list_checkpoints("src"), write=False)

        def fork(checkpoint, new_id, **options):
            return storage.run(
                lambda tx: launches.fork(tx, "src", checkpoint, new_id, at(10), **options)
            )

        assert fork("b", "f1") == "b"
        got = storage.run(lambda tx: tx.list_checkpoints("f1"), write=False)
        assert [c.checkpoint_id for c in got] == ["b", "z"]
        assert storage.run(lambda tx: tx.get_checkpoint("f1", "b")).state == b"bbb"
        instance = self.status(storage, "f1")
        assert (instance.status, instance.tenant_id, instance.checkpoint_id) == (
            InstanceStatus.PENDING,
            "t",
            "b",
        )
        launch = storage.run(lambda tx: tx.get_launch("f1"))
        assert launch == records.Launch(
            "f1",
            '{"command": ["x"]}',
            b"in",
            4,
            next_launch_at=at(10),
            queue="q",
            key="k",
            origin_instance="src",
            origin_checkpoint="b",
        )
        # the latest, a new specification and input
        assert fork(None, "f2", respec=lambda spec: "{}", payload=None) == "d"
        got = storage.run(lambda tx: tx.list_checkpoints("f2"), write=False)
        assert [c.checkpoint_id for c in got] == ["d", "c", "a", "b", "z"]
        launch = storage.run(lambda tx: tx.get_launch("f2"))
        assert (launch.spec, launch.input, launch.origin_checkpoint) == ("{}", None, "d")
        for checkpoint, new_id, refusal in (
            ("b", "f1", "'f1' already exists"),
            ("b", "src", "'src' already exists"),
            ("nope", "f3", "no checkpoint 'nope'"),
        ):
            with pytest.raises(errors.OperationRefused, match=refusal):
                fork(checkpoint, new_id)
        with pytest.raises(errors.OperationRefused, match="not found"):
            storage.run(lambda tx: launches.fork(tx, "nope", None, "f3", at(10)))
        storage.register_instance("bare", "t", None, at(1))
        with pytest.raises(errors.OperationRefused, match="not started with"):
            storage.run(lambda tx: launches.fork(tx, "bare", None, "f3", at(10)))
        assert self.status(storage, "f3") is None
        # the source is as it was
        assert storage.run(lambda tx: tx.list_checkpoints("src"), write=False) == before
        assert self.status(storage, "src").status is InstanceStatus.FAILED
        assert storage.run(lambda tx: tx.get_launch("src")).origin_instance is None

    def test_children_are_started_once_listed_and_stopped_with_their_parent(self, storage):
        spec = '{"command": ["wf"], "cwd": "/w", "env": {"A": "1"}, "key": "k"}'
        storage.run(lambda tx: launches.start_instance(tx, "p", "t", spec, None, 4, at(0)))

        def child(parent, child_id, policy="cancel", command=None, payload=b"1"):
            return storage.run(
                lambda tx: launches.start_child(
                    tx, parent, child_id, command, {"B": "2"}, payload, policy, at(1)
                )
            )

        assert child("p", "c1") is False
        assert child("p", "c1") is True  # the same start again: deduplicated
        assert child("p", "c2", "abandon", ["other"]) is False
        assert child("c1", "g1") is False  # a grandchild
        with pytest.raises(errors.OperationRefused, match="already exists"):
            child("p", "c1", payload=b"2")
        with pytest.raises(errors.OperationRefused, match="not a child of 'c2'"):
            child("c2", "c1")
        with pytest.raises(errors.OperationRefused, match="on_parent_cancel"):
            child("p", "c3", "ignore")
        with pytest.raises(errors.OperationRefused, match="not found"):
            child("nope", "c3")
        got = storage.run(lambda tx: tx.list_children("p"), write=False)
        assert [launch.instance_id for launch in got] == ["c1", "c2"]
        c1, c2 = got
        assert json.loads(c1.spec) == {"command": ["wf"], "cwd": "/w", "env": {"A": "1", "B": "2"}}
        assert json.loads(c2.spec)["command"] == ["other"]
        assert (c1.parent_instance, c1.on_parent_cancel, c1.input, c1.max_failures) == (
            "p",
            "cancel",
            b"1",
            4,
        )
        assert c2.on_parent_cancel == "abandon"
        assert self.status(storage, "c1").tenant_id == "t"
        assert storage.run(lambda tx: tx.list_children("c2"), write=False) == []
        # stopping the parent stops c1 and its child g1 (nothing runs them: at once),
        # and leaves the abandoned c2
        storage.run(lambda tx: launches.request_stop(tx, "p", dt.timedelta(seconds=30), at(2)))
        for instance_id, status in (
            ("p", InstanceStatus.CANCELLED),
            ("c1", InstanceStatus.CANCELLED),
            ("g1", InstanceStatus.CANCELLED),
            ("c2", InstanceStatus.PENDING),
        ):
            assert self.status(storage, instance_id).status is status

    def test_start_then_exits_follow_the_restart_policy(self, storage):
        storage.run(lambda tx: launches.start_instance(tx, "job", "t", "{}", b"in", 2, at(0)))
        with pytest.raises(errors.OperationRefused, match="already exists"):
            storage.run(lambda tx: launches.start_instance(tx, "job", "t", "{}", None, 2, at(1)))
        lease = dt.timedelta(seconds=15)
        backoff = launches.Backoff(1.0, 60.0)

        def attempt(now):
            ((launch, instance),) = storage.run(lambda tx: launches.claim(tx, "me", now, lease, 5))
            storage.run(
                lambda tx: launches.launched(tx, "job", launch.holder, 99, None, "box", now)
            )
            return launch

        def exit_(launch, now, how="killed by SIGKILL", **facts):
            return storage.run(
                lambda tx: launches.exited(tx, "job", launch.holder, how, now, backoff, **facts)
            )

        first = attempt(at(1))
        assert first.attempt == 1
        assert exit_(first, at(3)) is launches.Outcome.RELAUNCH
        got = storage.run(lambda tx: tx.get_launch("job"))
        assert (got.failures, got.next_launch_at) == (1, at(4))
        # a failure after progress (a new checkpoint) resets the count and the back-off
        second = attempt(at(4))
        storage.register_instance("job", "t", None, at(5))
        storage.checkpoint("job", "step-1", b"", at(6))
        assert exit_(second, at(7)) is launches.Outcome.RELAUNCH
        got = storage.run(lambda tx: tx.get_launch("job"))
        assert (got.failures, got.next_launch_at) == (0, at(8))
        # ending suspended (by the attempt's own registered process) is no failure
        third = attempt(at(8))
        storage.register_instance("job", "t", "step-1", at(8))
        storage.begin_sleep("job", dt.timedelta(seconds=100), "", b"", at(9))
        assert exit_(third, at(10), "exited with code 0", code=0) is launches.Outcome.SUSPENDED
        got = storage.run(lambda tx: tx.get_launch("job"))
        assert (got.failures, got.next_launch_at) == (0, at(109))
        # two failures in a row without progress fail it (max 2)
        fourth = attempt(at(110))
        storage.register_instance("job", "t", "step-1", at(110))
        assert exit_(fourth, at(111)) is launches.Outcome.RELAUNCH
        fifth = attempt(at(112))
        outcome = exit_(fifth, at(113), "exited with code 1", code=1, stderr="Traceback: boom")
        assert outcome is launches.Outcome.FAILED
        got = self.status(storage, "job")
        assert got.status is InstanceStatus.FAILED
        assert got.error.startswith(
            "gave up after 2 failed attempts in a row without progress (5 launches in all): "
            "the last one exited with code 1"
        )
        assert got.error.endswith("Traceback: boom")
        # an exit recorded twice, or by a launcher that no longer holds it, is stale
        assert exit_(fifth, at(114)) is launches.Outcome.STALE
        kinds = [
            e.event_type
            for e in reversed(storage.run(lambda tx: tx.list_events("job"), write=False))
            if e.event_type in (EventType.LAUNCHED, EventType.EXITED)
        ]
        assert kinds == [EventType.LAUNCHED, EventType.EXITED] * 5
        storage.run(
            lambda tx: launches.start_instance(tx, "job", "t", "{}", None, 2, at(115), replace=True)
        )
        assert self.status(storage, "job").status is InstanceStatus.PENDING

    def test_retry_goes_on_from_the_checkpoints_with_a_fresh_count(self, storage):
        storage.run(lambda tx: launches.start_instance(tx, "job", "t", "{}", b"in", 1, at(0)))
        ((launch, _),) = storage.run(
            lambda tx: launches.claim(tx, "me", at(1), dt.timedelta(seconds=15), 5)
        )
        storage.register_instance("job", "t", None, at(2))
        storage.checkpoint("job", "step-1", b"one", at(3))
        storage.record_event("job", EventType.FAILED, b"boom", at(4))
        with pytest.raises(errors.OperationRefused, match="not been seen to end"):
            storage.run(lambda tx: launches.retry(tx, "job", at(5)))
        storage.run(
            lambda tx: launches.exited(
                tx, "job", launch.holder, "exited with code 1", at(5), launches.Backoff(1, 1)
            )
        )
        was = storage.run(
            lambda tx: launches.retry(tx, "job", at(6), respec=lambda old: '{"v": 2}', payload=b"2")
        )
        assert (was.status, was.checkpoint_id) == (InstanceStatus.FAILED, "step-1")
        got = self.status(storage, "job")
        assert (got.status, got.error, got.finished_at) == (InstanceStatus.PENDING, None, None)
        retried = storage.run(lambda tx: tx.get_launch("job"))
        assert (retried.failures, retried.next_launch_at) == (0, at(6))
        assert (retried.spec, retried.input) == ('{"v": 2}', b"2")
        assert storage.run(lambda tx: tx.get_checkpoint("job", "step-1")).state == b"one"
        (event,) = storage.run(
            lambda tx: tx.list_events("job", records.EventFilter(event_type=EventType.RETRIED))
        )
        assert b'"was": "failed"' in event.payload
        for refused in ("job", "nope"):  # pending now; unknown
            with pytest.raises(errors.OperationRefused):
                storage.run(lambda tx, i=refused: launches.retry(tx, i, at(7)))

    def test_a_stopped_instance_retried_is_not_cancelled_again(self, storage):
        storage.run(lambda tx: launches.start_instance(tx, "job", "t", "{}", None, 3, at(0)))
        storage.run(lambda tx: launches.request_stop(tx, "job", dt.timedelta(seconds=30), at(1)))
        assert self.status(storage, "job").status is InstanceStatus.CANCELLED
        storage.run(lambda tx: launches.retry(tx, "job", at(2)))
        assert storage.run(lambda tx: tx.get_pending_signal("job")) is None
        assert storage.run(lambda tx: tx.get_launch("job")).stop_deadline is None

    # --- queues and schedules -------------------------------------------------

    def queued(self, tx, name, due, queue="q", key=None, priority=0, claimed_by=None):
        tx.create_instance(name, "tenant", T0)
        tx.insert_launch(
            self.launch(name, next_launch_at=due, queue=queue, key=key, priority=priority)
        )
        if claimed_by is not None:
            tx.update_launch(
                name,
                records.LaunchUpdate(
                    claimed_by=claimed_by, claimed_until=at(500), next_launch_at=None
                ),
            )

    def test_queue_rows_round_trip(self, storage):
        assert storage.run(lambda tx: tx.get_queue("q"), write=False) is None
        first = records.Queue("q", concurrency=2, per_key=1, rate_limit=5, rate_period=60.0)
        storage.run(lambda tx: tx.put_queue(first))
        assert storage.run(lambda tx: tx.get_queue("q", lock=True)) == first
        paused = records.Queue("q", paused=True)
        storage.run(lambda tx: tx.put_queue(paused))
        storage.run(lambda tx: tx.put_queue(records.Queue("a", concurrency=1)))
        storage.run(lambda tx: tx.lock_queues())
        assert storage.run(lambda tx: tx.list_queues(), write=False) == [
            records.Queue("a", concurrency=1),
            paused,
        ]

    def test_due_launches_come_by_priority_then_key_turns_then_due_time(self, storage):
        def setup(tx):
            self.queued(tx, "a1", at(1), key="a")
            self.queued(tx, "a2", at(2), key="a")
            self.queued(tx, "a3", at(3), key="a")
            self.queued(tx, "b1", at(4), key="b")
            self.queued(tx, "urgent", at(9), priority=5)
            self.queued(tx, "later", at(500), priority=9)

        storage.run(setup)
        due = storage.run(lambda tx: tx.list_due_launches(now=at(100), limit=10))
        assert due == ["urgent", "a1", "b1", "a2", "a3"]

    def test_due_launches_leave_out_what_a_queue_holds_back(self, storage):
        def setup(tx):
            tx.put_queue(records.Queue("paused", paused=True))
            tx.put_queue(records.Queue("full", concurrency=1))
            tx.put_queue(records.Queue("keyed", per_key=1))
            tx.put_queue(records.Queue("rated", rate_limit=1, rate_period=10.0))
            self.queued(tx, "p", at(1), queue="paused")
            self.queued(tx, "f-running", at(1), queue="full", claimed_by="L")
            self.queued(tx, "f", at(1), queue="full")
            self.queued(tx, "k-running", at(1), queue="keyed", key="x", claimed_by="L")
            self.queued(tx, "kx", at(2), queue="keyed", key="x")
            self.queued(tx, "ky", at(3), queue="keyed", key="y")
            self.queued(tx, "r", at(4), queue="rated")
            tx.record_queue_start("rated", at(50), at(60))

        storage.run(setup)

        def due(now):
            return storage.run(lambda tx: tx.list_due_launches(now=now, limit=10))

        assert due(at(55)) == ["ky"]
        assert due(at(60)) == ["ky", "r"]
        counts = storage.run(
            lambda tx: (
                tx.count_claimed("full"),
                tx.count_claimed("keyed", "x"),
                tx.count_claimed("keyed", "y"),
                tx.count_queue_starts("rated", at(59)),
                tx.count_queue_starts("rated", at(60)),
            ),
            write=False,
        )
        assert counts == (1, 1, 0, 1, 0)
        figures = storage.run(lambda tx: tx.queue_figures(at(2.5)), write=False)
        assert figures["full"] == records.QueueFigures(running=1, due=1, later=0)
        assert figures["keyed"] == records.QueueFigures(running=1, due=1, later=1)

    def test_schedule_rows_round_trip_and_due_ones_are_listed(self, storage):
        def schedule(name, next_tick, **fields):
            return records.Schedule(
                name=name,
                cron=None,
                every=60.0,
                timezone="UTC",
                overlap="skip",
                catch_up="one",
                tenant_id="tenant",
                spec='{"command": ["x"]}',
                input=b'{"a": 1}',
                created_at=T0,
                next_tick_at=next_tick,
                **fields,
            )

        storage.run(lambda tx: tx.put_schedule(schedule("b", at(10))))
        storage.run(lambda tx: tx.put_schedule(schedule("a", at(20))))
        storage.run(lambda tx: tx.put_schedule(schedule("paused", at(1), paused=True)))
        assert storage.run(lambda tx: tx.get_schedule("b"), write=False) == schedule("b", at(10))
        assert storage.run(lambda tx: tx.get_schedule("nope", lock=True)) is None
        assert storage.run(lambda tx: tx.list_due_schedules(now=at(30), limit=10)) == ["b", "a"]
        assert storage.run(lambda tx: tx.list_due_schedules(now=at(15), limit=10)) == ["b"]
        moved = schedule("b", at(70), last_tick_at=at(10), last_instance_id="b@x", ticks=1)
        storage.run(lambda tx: tx.put_schedule(moved))
        assert storage.run(lambda tx: tx.get_schedule("b", lock=True)) == moved
        names = [each.name for each in storage.run(lambda tx: tx.list_schedules(), write=False)]
        assert names == ["a", "b", "paused"]
        assert storage.run(lambda tx: tx.delete_schedule("a"))
        assert not storage.run(lambda tx: tx.delete_schedule("a"))

    # --- two processes --------------------------------------------------------

    @pytest.fixture
    def second_process(self, request) -> Callable[[], base.StorageDriver]:
        """``driver_factory``, for a driver whose store is shared between processes."""
        if not self.shared_between_processes:
            pytest.skip("the driver's store is not shared between processes")
        return request.getfixturevalue("driver_factory")

    def test_two_processes_store_each_checkpoint_exactly_once(self, storage, second_process):
        instance = self.registered(storage, "shared")
        checkpoint_ids = [f"race-{index}" for index in range(10)]
        answers = in_two_processes(
            storage, second_process, race_checkpoints, instance, checkpoint_ids, "p"
        )
        assert len(answers) == 2 * PROCESS_THREADS * len(checkpoint_ids)
        for checkpoint_id in checkpoint_ids:
            mine = [(stored, state) for cp, stored, state in answers if cp == checkpoint_id]
            winners = [state for stored, state in mine if stored]
            assert len(winners) == 1, (checkpoint_id, mine)
            assert {state for _, state in mine} == {winners[0]}
            assert storage.get_checkpoint(instance, checkpoint_id, at(1)) == winners[0]

    def test_two_processes_take_a_custom_signal_once(self, storage, second_process):
        instance = self.registered(storage, "signalled")
        checkpoint_ids = [f"approve-{index}" for index in range(10)]

        def leave(tx):
            for checkpoint_id in checkpoint_ids:
                tx.put_custom_signal(instance, checkpoint_id, checkpoint_id.encode(), T0)

        storage.run(leave)
        taken = in_two_processes(
            storage, second_process, take_custom_signals, instance, checkpoint_ids
        )
        assert sorted(taken) == sorted((cp, cp.encode()) for cp in checkpoint_ids)
