"""Schedules in the store (runtara.storage.schedules) on a real SQLite file and a
real PostgreSQL database, with the time given by the tests: what ``add`` refuses,
pause and resume, trigger, and which ticks ``fire_due`` starts (catch-up,
overlap, time zones, several servers at once)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import signal
import sys
import threading
from pathlib import Path

import attrs
import pytest

from runtara import errors, records
from runtara.config import StorageConfig
from runtara.launcher import scheduler
from runtara.launcher.spec import LaunchSpec
from runtara.records import InstanceStatus, InstanceUpdate
from runtara.storage import schedules, selection
from tests.support import ServerProcess, sqlite_url, wait_for

UTC = dt.timezone.utc
T0 = dt.datetime(2025, 1, 6, 9, 0, 0, tzinfo=UTC)
SPEC = json.dumps(
    {
        "command": ["/bin/true"],
        "cwd": None,
        "env": {"GREETING": "hello"},
        "max_failures": 5,
        "queue": "nightly",
        "key": "reports",
        "priority": 7,
    }
)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def open_storage(url: str):
    driver = selection.open_driver(StorageConfig(database_url=url), workers=4)
    driver.migrate()
    return driver


@pytest.fixture
def storage(database_url):
    driver = open_storage(database_url)
    yield driver
    driver.close()


def add(storage, name: str = "s", **changes) -> records.Schedule:
    arguments = {
        "cron": None,
        "every": 2.0,
        "timezone": "UTC",
        "overlap": "allow",
        "catch_up": "all",
        "tenant_id": "t",
        "spec": SPEC,
        "payload": None,
        "now": T0,
        **changes,
    }
    return storage.run(lambda tx: schedules.add(tx, name, **arguments))


def fire(storage, now: dt.datetime, limit: int = 50) -> schedules.Fired:
    return storage.run(lambda tx: schedules.fire_due(tx, now, limit=limit))


def schedule(storage, name: str = "s") -> records.Schedule:
    return storage.run(lambda tx: tx.get_schedule(name), write=False)


def instance(storage, instance_id: str) -> records.Instance | None:
    return storage.run(lambda tx: tx.get_instance(instance_id), write=False)


def finish(storage, instance_id: str) -> None:
    update = InstanceUpdate(status=InstanceStatus.COMPLETED, finished_at=T0)
    storage.run(lambda tx: tx.update_instance(instance_id, update))


# --- add ------------------------------------------------------------------------

BAD_ADDS = [
    ({"name": ""}, "schedule is required"),
    ({"name": "a\x00b"}, "NUL"),
    ({"name": "n" * (schedules.MAX_NAME_BYTES + 1)}, "its instances' ids"),
    ({"cron": "* * * * *"}, "either a cron expression or an interval"),
    ({"every": None}, "either a cron expression or an interval"),
    ({"cron": "61 * * * *", "every": None}, "not a cron expression"),
    ({"cron": "H * * * *", "every": None}, "not a cron expression"),
    ({"cron": "0 0 1 1 * 0 2020", "every": None}, "has no time after"),
    ({"every": 0.5}, "at least 1"),
    ({"every": 0}, "at least 1"),
    ({"every": -2}, "at least 1"),
    ({"every": float("nan")}, "at least 1"),
    ({"every": float("inf")}, "3650 days"),
    ({"every": True}, "not an interval"),
    ({"timezone": "Mars/Olympus_Mons"}, "not a known IANA time zone"),
    ({"timezone": ""}, "not a known IANA time zone"),
    ({"overlap": "queue"}, "overlap 'queue' is not one of skip, allow, cancel-previous"),
    ({"catch_up": "some"}, "catch-up 'some' is not one of none, one, all"),
    ({"tenant_id": ""}, "tenant_id is required"),
    ({"spec": "{"}, "not JSON"),
    ({"spec": "[]"}, "must be a JSON object"),
    ({"spec": '{"command": ["x"], "env": []}'}, "env must be a JSON object"),
    ({"spec": '{"command": ["x"], "max_failures": "3"}'}, "must be integers"),
    ({"spec": '{"command": ["x"], "queue": 1}'}, "queue must be text"),
    ({"spec": json.dumps({"command": ["x"], "key": "k" * 256})}, "key is 256 bytes long"),
    ({"payload": b"[1, 2]"}, 'added as "scheduled_at"'),
    ({"payload": b"not json"}, 'added as "scheduled_at"'),
    ({"payload": b'{"scheduled_at": "x"}'}, 'must not have "scheduled_at"'),
]


def test_add_refuses_each_bad_argument_and_stores_nothing(storage):
    for changes, message in BAD_ADDS:
        changes = dict(changes)
        name = changes.pop("name", "s")
        with pytest.raises(errors.OperationRefused) as refused:
            add(storage, name, **changes)
        assert message in str(refused.value), changes
    assert storage.run(lambda tx: tx.list_schedules(), write=False) == []


def test_add_refuses_a_taken_name_unless_replaced_afresh(storage):
    add(storage, every=2)
    fire(storage, at(2))
    with pytest.raises(errors.OperationRefused, match="'s' already exists"):
        add(storage, every=5, now=at(3))
    assert schedule(storage).every == 2
    replaced = add(storage, every=5, now=at(3), replace=True)
    assert schedule(storage) == replaced
    assert (replaced.every, replaced.ticks, replaced.last_instance_id) == (5, 0, None)
    assert replaced.next_tick_at == at(8)


def test_first_tick_of_an_interval_and_of_a_cron_expression(storage):
    every = add(storage, "every", every=10, now=at(0.3))
    assert every.next_tick_at == at(10)  # ticks fall on the whole seconds of its creation
    assert every.created_at == at(0.3)
    cron = add(storage, "cron", every=None, cron="*/5 * * * *", now=at(1))
    assert cron.next_tick_at == at(300)
    seconds = add(storage, "seconds", every=None, cron="* * * * * */15", now=at(1))
    assert seconds.next_tick_at == at(15)
    assert [s.name for s in storage.run(lambda tx: tx.list_schedules(), write=False)] == [
        "cron",
        "every",
        "seconds",
    ]


# --- operators ------------------------------------------------------------------


def test_unknown_schedules_are_refused_or_not_removed(storage):
    for operation in (
        lambda tx: schedules.set_paused(tx, "x", True, T0),
        lambda tx: schedules.set_paused(tx, "x", False, T0),
        lambda tx: schedules.trigger(tx, "x", T0),
    ):
        with pytest.raises(errors.OperationRefused, match="Schedule 'x' not found"):
            storage.run(operation)
    assert storage.run(lambda tx: schedules.remove(tx, "x")) is False


def test_a_paused_schedule_starts_nothing_and_resumes_without_catching_up(storage):
    add(storage, every=2, catch_up="all")
    assert fire(storage, at(2)).started == ["s@2025-01-06T09:00:02Z"]
    paused = storage.run(lambda tx: schedules.set_paused(tx, "s", True, at(3)))
    assert paused.paused
    assert fire(storage, at(10)).started == []
    resumed = storage.run(lambda tx: schedules.set_paused(tx, "s", False, at(10.5)))
    assert (resumed.paused, resumed.next_tick_at, resumed.skipped) == (False, at(12), 0)
    assert fire(storage, at(11)).started == []
    assert fire(storage, at(12.2)).started == ["s@2025-01-06T09:00:12Z"]
    assert (schedule(storage).ticks, schedule(storage).skipped) == (2, 0)
    # resuming a schedule that runs changes nothing
    again = storage.run(lambda tx: schedules.set_paused(tx, "s", False, at(13)))
    assert again.next_tick_at == at(14)


def test_remove_leaves_its_instances(storage):
    add(storage, every=2)
    [started] = fire(storage, at(2)).started
    assert storage.run(lambda tx: schedules.remove(tx, "s")) is True
    assert schedule(storage) is None
    assert fire(storage, at(10)).started == []
    assert instance(storage, started).status is InstanceStatus.PENDING


def test_trigger_starts_one_instance_now_paused_or_not_whatever_the_overlap(storage):
    add(storage, every=60, overlap="skip", payload=b'{"report": "daily"}')
    storage.run(lambda tx: schedules.set_paused(tx, "s", True, at(1)))
    first = storage.run(lambda tx: schedules.trigger(tx, "s", at(1.25)))
    second = storage.run(lambda tx: schedules.trigger(tx, "s", at(1.5)))
    assert first == "s@2025-01-06T09:00:01.250000Z"
    assert second == "s@2025-01-06T09:00:01.500000Z"
    launch = storage.run(lambda tx: tx.get_launch(first), write=False)
    assert json.loads(launch.input) == {
        "report": "daily",
        "scheduled_at": "2025-01-06T09:00:01.250Z",
    }
    assert LaunchSpec.from_json(launch.spec).env["RUNTARA_SCHEDULED_AT"] == (
        "2025-01-06T09:00:01.250Z"
    )
    after = schedule(storage)
    assert (after.ticks, after.last_instance_id, after.paused) == (2, second, True)


# --- fire_due -------------------------------------------------------------------


def test_each_instance_runs_the_spec_with_the_tick_time_in_env_and_input(storage):
    add(storage, every=2, payload=b'{"region": "eu"}')
    [instance_id] = fire(storage, at(2.1)).started
    assert instance_id == "s@2025-01-06T09:00:02Z"
    created = instance(storage, instance_id)
    assert (created.tenant_id, created.status) == ("t", InstanceStatus.PENDING)
    launch = storage.run(lambda tx: tx.get_launch(instance_id), write=False)
    assert json.loads(launch.input) == {"region": "eu", "scheduled_at": "2025-01-06T09:00:02Z"}
    spec = json.loads(launch.spec)
    assert spec["env"] == {"GREETING": "hello", "RUNTARA_SCHEDULED_AT": "2025-01-06T09:00:02Z"}
    assert spec["command"] == ["/bin/true"]
    assert (launch.max_failures, launch.queue, launch.key, launch.priority) == (
        5,
        "nightly",
        "reports",
        7,
    )
    assert launch.next_launch_at == at(2.1)
    after = schedule(storage)
    assert (after.last_tick_at, after.last_instance_id, after.next_tick_at) == (
        at(2),
        instance_id,
        at(4),
    )


def test_every_two_seconds_for_eleven_seconds_starts_each_tick_once(storage):
    add(storage, every=2, catch_up="none")
    started = []
    for half_seconds in range(1, 23):
        started += fire(storage, at(half_seconds / 2)).started
    assert started == [f"s@2025-01-06T09:00:{second:02}Z" for second in (2, 4, 6, 8, 10)]
    assert (schedule(storage).ticks, schedule(storage).skipped) == (5, 0)


def test_a_tick_started_before_is_not_started_or_counted_again(storage):
    add(storage, every=2)
    before = schedule(storage)
    assert fire(storage, at(2)).started == ["s@2025-01-06T09:00:02Z"]
    storage.run(lambda tx: tx.put_schedule(before))  # as if that firing were not recorded
    fired = fire(storage, at(2.5))
    assert (fired.started, fired.skipped) == ([], 0)
    assert (schedule(storage).ticks, schedule(storage).last_instance_id) == (
        0,
        "s@2025-01-06T09:00:02Z",
    )


@pytest.mark.parametrize(
    ("catch_up", "now", "started_seconds", "skipped"),
    [
        ("none", 12.5, [12], 5),  # the latest is on time (0.5 s late, 1 s allowed)
        ("none", 13.5, [], 6),  # the latest is 1.5 s late
        ("one", 13.5, [12], 5),
        ("all", 12.5, [2, 4, 6, 8, 10, 12], 0),
    ],
)
def test_catch_up_after_ten_seconds_without_a_scheduler(
    storage, catch_up, now, started_seconds, skipped
):
    add(storage, every=2, catch_up=catch_up)
    fired = fire(storage, at(now))
    assert fired.started == [f"s@2025-01-06T09:00:{second:02}Z" for second in started_seconds]
    assert fired.skipped == skipped
    after = schedule(storage)
    assert (after.ticks, after.skipped) == (len(started_seconds), skipped)
    assert (after.last_tick_at, after.next_tick_at) == (at(12), at(14))


def test_catch_up_all_starts_the_latest_hundred(storage):
    add(storage, every=1, catch_up="all")
    fired = fire(storage, at(150.2))
    assert len(fired.started) == 100
    assert fired.started[0] == "s@2025-01-06T09:00:51Z"
    assert fired.started[-1] == "s@2025-01-06T09:02:30Z"
    assert fired.skipped == 50


def test_overlap_skip_waits_for_the_previous_instance_to_finish(storage):
    add(storage, every=2, overlap="skip", catch_up="one")
    [first] = fire(storage, at(2)).started
    assert fire(storage, at(4)) == schedules.Fired([], 1)
    finish(storage, first)
    assert fire(storage, at(6)).started == ["s@2025-01-06T09:00:06Z"]
    assert (schedule(storage).ticks, schedule(storage).skipped) == (2, 1)


def test_overlap_skip_with_catch_up_all_starts_the_first_missed_tick_only(storage):
    add(storage, every=2, overlap="skip", catch_up="all")
    fired = fire(storage, at(6))
    assert (fired.started, fired.skipped) == (["s@2025-01-06T09:00:02Z"], 2)


def test_overlap_allow_starts_beside_the_previous_instance(storage):
    add(storage, every=2, overlap="allow", catch_up="one")
    [first] = fire(storage, at(2)).started
    assert fire(storage, at(4)).started == ["s@2025-01-06T09:00:04Z"]
    assert instance(storage, first).status is InstanceStatus.PENDING


def test_overlap_cancel_previous_stops_the_previous_instance(storage):
    add(storage, every=2, overlap="cancel-previous", catch_up="all")
    [first] = fire(storage, at(2)).started
    assert fire(storage, at(4)).started == ["s@2025-01-06T09:00:04Z"]
    # nothing ran it yet: stopped at once
    assert instance(storage, first).status is InstanceStatus.CANCELLED
    # ticks caught up together: only the latest starts
    fired = fire(storage, at(10))
    assert (fired.started, fired.skipped) == (["s@2025-01-06T09:00:10Z"], 2)
    assert instance(storage, "s@2025-01-06T09:00:04Z").status is InstanceStatus.CANCELLED


def test_cancel_previous_leaves_a_finished_instance_alone(storage):
    add(storage, every=2, overlap="cancel-previous")
    [first] = fire(storage, at(2)).started
    finish(storage, first)
    assert fire(storage, at(4)).started == ["s@2025-01-06T09:00:04Z"]
    assert instance(storage, first).status is InstanceStatus.COMPLETED


def test_cron_ticks_follow_its_time_zone_through_daylight_saving(storage):
    winter = dt.datetime(2025, 3, 8, 12, 0, tzinfo=UTC)  # 07:00 in New York (EST)
    added = add(storage, every=None, cron="0 9 * * *", timezone="America/New_York", now=winter)
    assert added.next_tick_at == dt.datetime(2025, 3, 8, 14, 0, tzinfo=UTC)
    fired = fire(storage, dt.datetime(2025, 3, 8, 14, 0, 0, 300000, tzinfo=UTC))
    assert fired.started == ["s@2025-03-08T14:00:00Z"]
    launch = storage.run(lambda tx: tx.get_launch(fired.started[0]), write=False)
    assert json.loads(launch.spec)["env"]["RUNTARA_SCHEDULED_AT"] == "2025-03-08T14:00:00Z"
    # the clocks go forward on 9 March: 09:00 is 13:00 UTC from then on
    assert schedule(storage).next_tick_at == dt.datetime(2025, 3, 9, 13, 0, tzinfo=UTC)
    fired = fire(storage, dt.datetime(2025, 3, 10, 13, 0, 1, tzinfo=UTC))
    assert fired.started == ["s@2025-03-09T13:00:00Z", "s@2025-03-10T13:00:00Z"]


def test_a_cron_expression_out_of_years_pauses_its_schedule(storage):
    add(storage)
    past = attrs.evolve(
        schedule(storage),
        cron="0 0 1 1 * 0 2020",
        every=None,
        next_tick_at=dt.datetime(2019, 12, 31, tzinfo=UTC),
    )
    storage.run(lambda tx: tx.put_schedule(past))
    fired = fire(storage, T0)
    assert fired.started == ["s@2020-01-01T00:00:00Z"]
    assert fired.paused == {"s": "cron '0 0 1 1 * 0 2020' has no more times"}
    assert schedule(storage).paused
    assert fire(storage, at(100)) == schedules.Fired()


def test_a_schedule_stored_unusable_is_paused_and_the_others_fire(storage):
    add(storage, "broken")
    add(storage, "fine")
    broken = attrs.evolve(schedule(storage, "broken"), spec="not json")
    storage.run(lambda tx: tx.put_schedule(broken))
    fired = fire(storage, at(2))
    assert fired.started == ["fine@2025-01-06T09:00:02Z"]
    assert list(fired.paused) == ["broken"]
    assert "not JSON" in fired.paused["broken"]
    assert schedule(storage, "broken").paused


def test_fire_due_takes_at_most_limit_schedules_longest_due_first(storage):
    add(storage, "late", every=2, now=at(-1))
    add(storage, "early", every=2, now=at(-2))
    assert fire(storage, at(1), limit=1).started == ["early@2025-01-06T09:00:00Z"]
    assert fire(storage, at(1), limit=1).started == ["late@2025-01-06T09:00:01Z"]


def test_two_servers_firing_at_once_start_each_tick_once(postgres_url):
    """Two drivers (two servers' connection pools) fire the same schedules at the
    same simulated times: the row locks let exactly one of them start each tick."""
    first, second = open_storage(postgres_url), open_storage(postgres_url)
    try:
        names = [f"s{number}" for number in range(6)]
        for name in names:
            add(first, name, every=1, catch_up="all", overlap="allow")
        steps = 60
        barrier = threading.Barrier(2)
        results: dict[int, list[str]] = {0: [], 1: []}
        failures: list[BaseException] = []

        def server(index: int, driver) -> None:
            try:
                for step in range(1, steps + 1):
                    barrier.wait(10)
                    results[index] += fire(driver, at(step * 0.2)).started
            except BaseException as error:  # reported by the main thread
                failures.append(error)
                barrier.abort()

        threads = [
            threading.Thread(target=server, args=(index, driver))
            for index, driver in enumerate((first, second))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not failures
        started = results[0] + results[1]
        assert len(started) == len(set(started)) == len(names) * 12
        stored = first.run(lambda tx: tx.list_schedules(), write=False)
        assert [(s.ticks, s.skipped) for s in stored] == [(12, 0)] * len(names)
        for name in names:
            assert f"{name}@2025-01-06T09:00:12Z" in started
    finally:
        first.close()
        second.close()


# --- the server's scheduler -----------------------------------------------------


def test_the_scheduler_counts_what_it_started_and_skipped_and_pokes_the_launcher(storage):
    add(storage, every=2, catch_up="none")
    clock = [at(1)]
    pokes = []
    firer = scheduler.Scheduler(storage, now=lambda: clock[0])
    firer.on_started = lambda: pokes.append(clock[0])
    firer.tick()  # nothing due yet
    clock[0] = at(2)
    firer.tick()
    clock[0] = at(9.5)  # ticks 4 and 6 missed, 8 is 1.5 s late
    firer.tick()
    assert (firer.schedule_ticks_started, firer.schedule_ticks_skipped) == (1, 3)
    assert pokes == [at(2)]


def test_the_scheduler_logs_a_storage_failure_and_goes_on(caplog):
    class Unavailable:
        def run(self, work, *, write=True):
            raise errors.StorageUnavailable("Database unavailable: gone")

    firer = scheduler.Scheduler(Unavailable(), now=lambda: T0)
    with caplog.at_level(logging.WARNING):
        firer.tick()
    assert "Database unavailable: gone" in caplog.text
    assert firer.schedule_ticks_started == 0


def test_a_server_with_a_launcher_runs_each_tick_of_a_schedule(tmp_path):
    url = sqlite_url(tmp_path)
    storage = open_storage(url)
    workflow = Path(__file__).parent.parent / "workflows" / "echo_input.py"
    spec = LaunchSpec((sys.executable, str(workflow))).to_json()
    server = ServerProcess(
        "--database-url", url, "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path
    )
    try:
        now = records_now()
        add(storage, every=1, catch_up="none", spec=spec, payload=b'{"n": 1}', now=now)

        def a_completed_instance():
            listed = storage.run(lambda tx: tx.list_schedules(), write=False)[0]
            found = listed.last_instance_id and instance(storage, listed.last_instance_id)
            return found if found and found.status is InstanceStatus.COMPLETED else None

        done = wait_for(a_completed_instance, 30)
        output = json.loads(done.output)["got"]
        assert output["n"] == 1
        assert done.instance_id == "s@" + output["scheduled_at"]
        assert "schedule started instance 's@" in server.output()
    finally:
        server.signal(signal.SIGTERM)
        server.wait()
        storage.close()


def records_now() -> dt.datetime:
    return dt.datetime.now(UTC)
