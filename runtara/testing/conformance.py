"""The storage-driver conformance kit: every driver runs these tests.

Subclass :class:`DriverConformance` in a test module of your driver package
(its name must start with ``Test``) and provide one fixture, ``driver``, that
yields a new driver on an *empty* store (no tables), constructed with
``workers=16`` or more, and closes it afterwards::

    import pytest
    from runtara.testing.conformance import DriverConformance

    class TestMyDriver(DriverConformance):
        @pytest.fixture
        def driver(self, tmp_path):
            driver = MyDriver(f"mydb:{tmp_path}/store", workers=16)
            yield driver
            driver.close()

The kit covers every method of :class:`runtara.storage.base.Transaction` and
:class:`runtara.storage.base.StorageDriver`: semantics, errors, transaction
scope, concurrency from many threads (exactly-once checkpoints, take-once
custom signals, serialized updates of one instance), payloads up to the 64 MiB
frame limit, non-UTF-8 bytes, and migrations from an empty store.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

import pytest

from runtara import errors, records
from runtara.records import InstanceStatus, InstanceUpdate, SignalType
from runtara.storage import base

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


class DriverConformance:
    """Tests every storage driver must pass; provide the ``driver`` fixture."""

    threads = 16
    """How many threads the concurrency tests use (at most the driver's ``workers``)."""

    @pytest.fixture
    def driver(self) -> base.StorageDriver:
        raise NotImplementedError("provide a `driver` fixture yielding a driver on an empty store")

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
        assert got == records.Instance(
            instance_id=instance,
            tenant_id="tenant",
            status=InstanceStatus.FAILED,
            created_at=T0,
            checkpoint_id="cp-9",
            started_at=at(1),
            finished_at=at(2.5),
            output=BINARY,
            error="bröken",
            sleep_until=at(3600),
            last_activity_at=at(2.001),
            wake_claimed_until=at(3601),
        )
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

    def sleeping(self, storage, instance_id, wakes_at, claimed_until=None, status=None):
        def setup(tx):
            tx.create_instance(instance_id, "tenant", T0)
            tx.update_instance(
                instance_id,
                InstanceUpdate(
                    status=status or InstanceStatus.SUSPENDED,
                    sleep_until=wakes_at,
                    wake_claimed_until=claimed_until,
                ),
            )

        storage.run(setup)

    def test_due_sleepers_are_claimed_oldest_first(self, storage):
        self.sleeping(storage, "late", at(30))
        self.sleeping(storage, "early", at(10))
        self.sleeping(storage, "future", at(500))
        self.sleeping(storage, "claimed", at(5), claimed_until=at(200))
        self.sleeping(storage, "claim-expired", at(20), claimed_until=at(50))
        self.sleeping(storage, "running", at(1), status=InstanceStatus.RUNNING)
        storage.run(lambda tx: tx.create_instance("awake", "tenant", T0))

        def claim(limit):
            return storage.run(
                lambda tx: tx.claim_due_sleepers(
                    due_before=at(100), now=at(100), claim_until=at(160), limit=limit
                )
            )

        first = claim(2)
        assert [i.instance_id for i in first] == ["early", "claim-expired"]
        assert first[0].wake_claimed_until is None  # as it was before the claim
        assert [i.instance_id for i in claim(10)] == ["late"]
        assert claim(10) == []
        got = storage.run(lambda tx: tx.get_instance("early"))
        assert got.wake_claimed_until == at(160) and got.sleep_until == at(10)

    def test_concurrent_claims_never_share_an_instance(self, storage):
        for index in range(40):
            self.sleeping(storage, f"s{index:02}", at(index))

        def claim(_):
            return [
                i.instance_id
                for i in storage.run(
                    lambda tx: tx.claim_due_sleepers(
                        due_before=at(100), now=at(100), claim_until=at(200), limit=3
                    )
                )
            ]

        claimed = [name for batch in in_threads(self.threads, claim) for name in batch]
        assert len(claimed) == len(set(claimed)) == 40

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
