"""Races of the launch protocol on PostgreSQL, where row locks (not one write
lock, as in SQLite) order concurrent transactions: each transition takes the
instance's row first and compare-and-sets the launch, so two launchers never
both take a launch, and launchers never deadlock with operators."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time

import pytest

from runtara import clock, records
from runtara.launcher.spec import LaunchSpec
from runtara.records import InstanceStatus, InstanceUpdate, LaunchUpdate
from runtara.storage import launches, operations
from tests.support import migrated_storage

LEASE = dt.timedelta(seconds=15)
SPEC = LaunchSpec(("/bin/true",)).to_json()
HELD = 0.5
"""Seconds the first transaction of a race stays open while the second one starts."""


@pytest.fixture
def storage(postgres_url):
    with migrated_storage(postgres_url, workers=4) as driver:
        yield driver


def race(storage, first, second, *, pause_in=None) -> dict[str, object]:
    """Run ``first(tx)`` and keep its transaction open while ``second(tx)`` starts in
    another one; return both results (and how many times each work ran).

    With ``pause_in`` (a Transaction method's name), the first work pauses inside
    its first call of that method instead, so the second starts between the
    locks the first takes before and after it.
    """
    opened = threading.Event()
    results: dict[str, object] = {"runs": {"first": 0, "second": 0}}

    def run_first():
        def work(tx):
            results["runs"]["first"] += 1
            if pause_in is not None:
                real = getattr(tx, pause_in)

                def paused(*args, **kwargs):
                    if not opened.is_set():
                        opened.set()
                        time.sleep(HELD)
                    return real(*args, **kwargs)

                setattr(tx, pause_in, paused)
            value = first(tx)
            if not opened.is_set():
                opened.set()
                time.sleep(HELD)
            return value

        results["first"] = storage.run(work)

    def run_second():
        opened.wait(5)

        def work(tx):
            results["runs"]["second"] += 1
            return second(tx)

        results["second"] = storage.run(work)

    threads = [threading.Thread(target=run_first), threading.Thread(target=run_second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def lapsed_launch(storage, instance_id: str, pid: int = 12345) -> records.LaunchHolder:
    now = clock.utc_now()
    storage.run(lambda tx: launches.start_instance(tx, instance_id, "t", SPEC, None, 3, now))

    def lapse(tx):
        tx.update_instance(instance_id, InstanceUpdate(status=InstanceStatus.RUNNING))
        tx.update_launch(
            instance_id,
            LaunchUpdate(
                attempt=1,
                claimed_by="dead-launcher",
                claimed_until=now - dt.timedelta(seconds=5),
                next_launch_at=None,
                pid=pid,
                pid_started=1,
                host="box",
            ),
        )

    storage.run(lapse)
    return records.LaunchHolder("dead-launcher", 1)


def test_two_first_registrations_through_the_generic_rules_get_different_numbers(storage):
    def register(tx):
        return operations.register_instance(tx, "raced", "t", None, clock.utc_now())

    results = race(storage, register, register)
    assert sorted([results["first"], results["second"]]) == [1, 2]
    assert storage.run(lambda tx: tx.get_instance("raced"), write=False).registration == 2


def test_two_launchers_never_both_adopt_a_lapsed_launch(storage):
    seen = lapsed_launch(storage, "adopted")
    now = clock.utc_now()
    results = race(
        storage,
        lambda tx: launches.adopt(tx, "adopted", seen, "launcher-A", now, LEASE),
        lambda tx: launches.adopt(tx, "adopted", seen, "launcher-B", now, LEASE),
    )
    assert results["first"] is not None and results["second"] is None
    assert storage.run(lambda tx: tx.get_launch("adopted")).claimed_by == "launcher-A"


def test_two_launchers_never_both_relaunch_a_lost_launch(storage):
    seen = lapsed_launch(storage, "lost")
    now = clock.utc_now()
    backoff = launches.Backoff(1.0, 60.0)

    def lost(name):
        return lambda tx: launches.relaunch_lost(
            tx, "lost", seen, name, "was lost", now, LEASE, backoff
        )

    results = race(storage, lost("launcher-A"), lost("launcher-B"))
    assert (results["first"], results["second"]) == (
        launches.Outcome.RELAUNCH,
        launches.Outcome.STALE,
    )
    exits = storage.run(
        lambda tx: tx.list_events("lost", records.EventFilter(event_type=records.EventType.EXITED))
    )
    assert len(exits) == 1


def test_a_claim_and_an_operators_resume_do_not_deadlock(storage, caplog):
    now = clock.utc_now()
    storage.run(lambda tx: launches.start_instance(tx, "paused", "t", SPEC, None, 3, now))
    storage.run(
        lambda tx: tx.update_instance("paused", InstanceUpdate(status=InstanceStatus.SUSPENDED))
    )

    def resume(tx):
        return operations.send_signal(tx, "paused", records.SignalType.RESUME, b"", clock.utc_now())

    with caplog.at_level(logging.INFO):
        results = race(
            storage,
            lambda tx: launches.claim(tx, "launcher-A", clock.utc_now(), LEASE, 10),
            resume,
            pause_in="get_instance",  # the claim has listed (and locked) what is due
        )
    # each ran once: no transaction was aborted as a deadlock and retried
    assert results["runs"] == {"first": 1, "second": 1}
    assert "deadlock" not in caplog.text
    ((claimed, _),) = results["first"]
    assert claimed.instance_id == "paused"
