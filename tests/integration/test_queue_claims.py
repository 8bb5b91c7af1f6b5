"""Which due launches a launcher claims, on SQLite and PostgreSQL: queue limits
(concurrency, per key, rate, pause), priorities, fairness between keys, delays,
and idempotent starts. Times are given, not waited for."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from runtara import errors, records
from runtara.config import StorageConfig
from runtara.launcher.spec import LaunchSpec
from runtara.records import InstanceStatus, InstanceUpdate
from runtara.storage import launches, queues, selection
from tests.support import migrated_storage

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)
LEASE = dt.timedelta(seconds=30)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


@pytest.fixture
def storage(database_url):
    with migrated_storage(database_url, workers=4) as driver:
        yield driver


def start(storage, instance_id, *, when=0.0, queue="q", key=None, priority=0, **more):
    spec = LaunchSpec(("/bin/true",), queue=queue, key=key, priority=priority).to_json()
    return storage.run(
        lambda tx: launches.start_instance(
            tx,
            instance_id,
            "t",
            spec,
            more.pop("payload", None),
            3,
            at(when),
            queue=queue,
            key=key,
            priority=priority,
            **more,
        )
    )


def claim(storage, when, limit=10, launcher="L"):
    claimed = storage.run(lambda tx: launches.claim(tx, launcher, at(when), LEASE, limit))
    return [launch.instance_id for launch, _ in claimed]


def finish(storage, instance_id, when):
    """The instance completed and its launcher let go of it."""

    def work(tx):
        tx.update_instance(
            instance_id, InstanceUpdate(status=InstanceStatus.COMPLETED, finished_at=at(when))
        )
        tx.update_launch(instance_id, launches.RELEASED)

    storage.run(work)


def set_queue(storage, name="q", **limits):
    return storage.run(lambda tx: queues.set_queue(tx, name, **limits))


def test_a_queue_of_concurrency_2_has_at_most_2_claimed(storage):
    set_queue(storage, concurrency=2)
    for number in range(8):
        start(storage, f"job-{number}", when=number * 0.001)
    first = claim(storage, 1)
    assert first == ["job-0", "job-1"]
    assert claim(storage, 2) == []
    finish(storage, "job-0", 3)
    assert claim(storage, 4) == ["job-2"]
    # other queues are not held back by a full one
    start(storage, "other", when=4, queue="default")
    assert claim(storage, 5) == ["other"]


def test_per_key_limit_runs_one_of_a_key_while_other_keys_proceed(storage):
    set_queue(storage, per_key=1)
    for number in range(3):
        start(storage, f"a-{number}", when=number, key="merchant-a")
        start(storage, f"b-{number}", when=number, key="merchant-b")
    assert sorted(claim(storage, 10)) == ["a-0", "b-0"]
    assert claim(storage, 11) == []
    finish(storage, "a-0", 12)
    assert claim(storage, 13) == ["a-1"]


def test_waiting_keys_are_served_in_turn_not_oldest_first(storage):
    for number in range(4):
        start(storage, f"busy-{number}", when=number * 0.1, key="busy")
    start(storage, "quiet-0", when=1, key="quiet")
    start(storage, "quiet-1", when=1.1, key="quiet")
    assert claim(storage, 2, limit=4) == ["busy-0", "quiet-0", "busy-1", "quiet-1"]


def test_a_higher_priority_started_later_is_claimed_first(storage):
    set_queue(storage, concurrency=1)
    for number in range(3):
        start(storage, f"low-{number}", when=number * 0.1)
    start(storage, "urgent", when=1, priority=5)
    assert claim(storage, 2) == ["urgent"]
    finish(storage, "urgent", 3)
    assert claim(storage, 4) == ["low-0"]


def test_a_paused_queue_launches_nothing_until_resumed(storage):
    set_queue(storage, paused=True)
    start(storage, "job")
    assert claim(storage, 1) == []
    details = storage.run(lambda tx: _reason(tx, "job", at(1)), write=False)
    assert details == "queue q is paused"
    set_queue(storage, paused=False)
    assert claim(storage, 2) == ["job"]


def test_a_rate_limit_counts_launches_in_any_window(storage):
    set_queue(storage, rate=(2, 10.0))
    for number in range(5):
        start(storage, f"job-{number}", when=number * 0.001)
    assert claim(storage, 1) == ["job-0", "job-1"]
    assert claim(storage, 5) == []
    reason = storage.run(lambda tx: _reason(tx, "job-2", at(5)), write=False)
    assert reason == "queue q's rate limit (2 starts per 10s) is reached"
    assert claim(storage, 11.5) == ["job-2", "job-3"]


def test_a_delayed_start_waits_for_its_time(storage):
    start(storage, "later", not_before=at(3))
    assert claim(storage, 2.9) == []
    reason = storage.run(lambda tx: _reason(tx, "later", at(1)), write=False)
    assert reason.startswith("not before 2026-12-01T12:00:03")
    assert claim(storage, 3) == ["later"]


def test_starting_the_same_id_spec_and_input_again_changes_nothing(storage):
    assert start(storage, "deploy", payload=b'{"v":1}') is False
    assert start(storage, "deploy", when=5, payload=b'{"v":1}') is True
    assert claim(storage, 6) == ["deploy"]
    # while it runs, and once it is finished, the same start still answers deduplicated
    assert start(storage, "deploy", when=7, payload=b'{"v":1}') is True
    finish(storage, "deploy", 8)
    assert start(storage, "deploy", when=9, payload=b'{"v":1}') is True
    with pytest.raises(errors.OperationRefused, match="already exists"):
        start(storage, "deploy", when=10, payload=b'{"v":2}')
    page = storage.run(lambda tx: tx.count_instances(), write=False)
    assert page == 1


def test_queue_limits_are_checked(storage):
    with pytest.raises(errors.OperationRefused, match="--concurrency must be 1 or more"):
        set_queue(storage, concurrency=0)
    with pytest.raises(errors.OperationRefused, match="--rate"):
        set_queue(storage, rate=(0, 1.0))
    with pytest.raises(errors.OperationRefused, match="queue is 300 bytes"):
        set_queue(storage, "x" * 300, concurrency=1)
    shown = set_queue(storage, concurrency=3, per_key=1)
    assert set_queue(storage, per_key=None) == records.Queue("q", concurrency=3)
    assert shown.per_key == 1


def test_queue_list_counts_running_due_and_later(storage):
    set_queue(storage, concurrency=1)
    start(storage, "a")
    start(storage, "b")
    start(storage, "c", not_before=at(100))
    claim(storage, 1)
    views = storage.run(lambda tx: queues.list_queues(tx, at(2)), write=False)
    by_name = {view.queue.name: view for view in views}
    assert by_name["q"].figures == records.QueueFigures(running=1, due=1, later=1)
    assert by_name["default"].figures == records.QueueFigures()


def at_once(database_url: str, count: int, work) -> None:
    """Run ``work(index, driver)`` in ``count`` threads let go together, each on a
    storage driver of its own."""
    drivers = [
        selection.open_driver(StorageConfig(database_url=database_url), workers=2)
        for _ in range(count)
    ]
    barrier = threading.Barrier(count)

    def run(index):
        barrier.wait()
        work(index, drivers[index])

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for driver in drivers:
            driver.close()


def test_launchers_claiming_at_once_never_exceed_a_concurrency(storage, database_url):
    set_queue(storage, concurrency=2)
    for number in range(12):
        start(storage, f"job-{number}", when=number * 0.001)
    claimed: list[list[str]] = [[] for _ in range(3)]

    def launcher(index, driver):
        for step in range(5):
            claimed[index] += claim(driver, 1 + step * 0.01, launcher=f"L{index}")

    at_once(database_url, 3, launcher)
    assert sum(len(each) for each in claimed) == 2


def _reason(tx, instance_id, now):
    instance, launch = tx.get_instance(instance_id), tx.get_launch(instance_id)
    return launches.wait_reason(tx, instance, launch, now)


def test_the_same_start_sent_twice_at_once_answers_both_and_stores_one(storage, database_url):
    answers: list[object] = [None, None]

    def starter(index, driver):
        try:
            answers[index] = start(driver, "deploy", payload=b"{}")
        except errors.OperationRefused as refusal:
            answers[index] = refusal

    at_once(database_url, 2, starter)
    assert sorted(answers) == [False, True]
    assert storage.run(lambda tx: tx.count_instances(), write=False) == 1
