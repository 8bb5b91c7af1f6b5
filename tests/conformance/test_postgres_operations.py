"""PostgreSQL's server-side operations against the engine's rules they replace.

One script of operations runs on two fresh schemas: through the driver's calls
of the server-side functions, and through the rules of
``runtara.storage.operations`` (``StorageDriver``'s own operation methods, in
``run`` transactions). Every step must answer the same (the result, or the
exception's class, message and attributes) and both stores must end up
holding the same rows.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

import psycopg
import pytest

from runtara import errors
from runtara.drivers.postgres import PostgresDriver, refusals
from runtara.drivers.postgres.operations import ServerSideOperations
from runtara.records import EventType, SignalType
from runtara.storage import base, operations

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=dt.timezone.utc)
OPERATIONS = [
    name
    for name, value in vars(ServerSideOperations).items()
    if callable(value) and not name.startswith("_")
]

ThroughRules = type(
    "ThroughRules",
    (PostgresDriver,),
    {name: getattr(base.StorageDriver, name) for name in OPERATIONS},
)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def setup(work):
    """A step that runs ``work`` in a ``run`` transaction (the operators' side)."""
    return ("run", (work,), {})


def op(name, *args, **kwargs):
    return (name, args, kwargs)


SECONDS = dt.timedelta(seconds=1)

SCRIPT = [
    op("register_instance", "a", "t", None, at(0)),
    op("register_instance", "a", "other", None, at(1)),
    op("register_instance", "a", "t", "nope", at(1)),
    op("register_instance", "new", "t", "nope", at(1)),
    op("checkpoint", "ghost", "cp", b"x", at(1)),
    op("checkpoint", "a", "cp1", b"s1", at(1), 1),
    op("checkpoint", "a", "cp1", b"other", at(2), 1),
    op("register_instance", "a", "t", "cp1", at(3)),
    op("checkpoint", "a", "cp2", b"x", at(4), 1),
    setup(lambda tx: operations.send_signal(tx, "a", SignalType.PAUSE, b"p", at(4))),
    setup(lambda tx: operations.send_custom_signal(tx, "a", "cp3", b"\x00\xff", at(4))),
    setup(lambda tx: operations.send_custom_signal(tx, "a", "cp4", b"", at(4))),
    op("checkpoint", "a", "cp3", b"", at(5), 2),
    op("checkpoint", "a", "cp3", b"", at(5.5), 2),
    op("poll_signals", "a", "cp4", at(6), 2),
    op("poll_signals", "a", "cp4", at(6.5)),
    op("poll_signals", "a", None, at(7)),
    op("poll_signals", "ghost", "cp", at(7)),
    op("poll_signals", "a", None, at(7), 1),
    op("acknowledge_signal", "a", SignalType.PAUSE, False, at(8), 2),
    op("acknowledge_signal", "a", SignalType.RESUME, True, at(8), 2),
    op("acknowledge_signal", "a", SignalType.PAUSE, True, at(9), 2),
    op("acknowledge_signal", "a", SignalType.PAUSE, True, at(9), 1),
    op("acknowledge_signal", "ghost", SignalType.PAUSE, True, at(9)),
    op("get_checkpoint", "a", "cp1", at(10), 2),
    op("get_checkpoint", "a", "missing", at(10)),
    op("get_checkpoint", "ghost", "cp1", at(10)),
    op("get_checkpoint", "a", "cp1", at(10), 1),
    op("record_retry", "a", "step", 1, "boom", at(11), 2),
    op("record_retry", "a", "step", 1, "again ✓", at(12)),
    op("record_retry", "a", "step", 2, None, at(13)),
    op("record_retry", "a", "step", 3, None, at(13), 1),
    op("record_retry", "ghost", "step", 1, None, at(13)),
    op("get_checkpoint", "a", "step::retry::1", at(14)),
    op("begin_sleep", "a", 5 * SECONDS + dt.timedelta(microseconds=1500), "zz", b"z", at(15), 2),
    op("begin_sleep", "a", SECONDS, "", b"", at(16), 2),
    op("checkpoint", "a", "cp5", b"x", at(16), 2),
    op("finish_sleep", "a", at(99), at(17)),
    op("finish_sleep", "a", at(20.001), at(17)),
    op("finish_sleep", "ghost", at(20.001), at(17)),
    op("begin_sleep", "a", SECONDS, "cp1", b"ignored", at(18), 2),
    op("finish_sleep", "a", at(19), at(19)),
    op("begin_sleep", "a", dt.timedelta(days=3650), "", b"", at(20), 2),
    op("finish_sleep", "a", at(20) + dt.timedelta(days=3650), at(21)),
    op("begin_sleep", "a", SECONDS, "", b"", at(22), 1),
    op("begin_sleep", "ghost", SECONDS, "", b"", at(22)),
    op("instance_status", "a", at(23)),
    op("instance_status", "ghost", at(23)),
    op("record_event", "a", EventType.HEARTBEAT, b"", at(24), registration=2),
    op("record_event", "a", EventType.CUSTOM, b"{}", at(25), checkpoint_id="c", subtype="s"),
    op("record_event", "a", EventType.SUSPENDED, b"", at(26), checkpoint_id="cp1"),
    op("record_event", "a", EventType.HEARTBEAT, b"", at(26), registration=1),
    op("record_event", "ghost", EventType.HEARTBEAT, b"", at(26)),
    op("register_instance", "a", "t", None, at(27)),
    op("record_event", "a", EventType.COMPLETED, b"out", at(28), registration=3),
    op("record_event", "a", EventType.COMPLETED, b"out", at(29), registration=3),
    op("record_event", "a", EventType.COMPLETED, b"different", at(30)),
    op("record_event", "a", EventType.FAILED, b"late", at(30)),
    op("record_event", "a", EventType.SUSPENDED, b"", at(30)),
    op("record_event", "a", EventType.HEARTBEAT, b"", at(31)),
    op("acknowledge_signal", "a", SignalType.CANCEL, True, at(31)),
    op("checkpoint", "a", "cp6", b"x", at(32)),
    op("register_instance", "a", "t", None, at(32)),
    op("instance_status", "a", at(33)),
    op("register_instance", "b", "t", None, at(40)),
    op("record_event", "b", EventType.FAILED, b"\xff\xfe", at(41)),
    op("record_event", "b", EventType.FAILED, b"\xff\xfe", at(42)),
    op("record_event", "b", EventType.FAILED, b"other", at(43)),
    op("register_instance", "c", "t", None, at(40)),
    op("record_event", "c", EventType.FAILED, b"a\x00b", at(41)),
    op("record_event", "c", EventType.FAILED, b"", at(42)),
    op("register_instance", "d", "t", None, at(40)),
    op("record_event", "d", EventType.COMPLETED, b"", at(41)),
    op("record_event", "d", EventType.COMPLETED, b"", at(42)),
    op("record_event", "d", EventType.COMPLETED, b"x", at(43)),
    op("register_instance", "e", "t", None, at(40)),
    setup(lambda tx: operations.send_signal(tx, "e", SignalType.CANCEL, b"", at(41))),
    op("acknowledge_signal", "e", SignalType.CANCEL, True, at(42)),
    op("acknowledge_signal", "e", SignalType.CANCEL, True, at(43)),
    op("record_event", "e", EventType.COMPLETED, b"", at(44)),
    setup(lambda tx: tx.create_instance("pending", "t", at(50))),
    op("checkpoint", "pending", "cp", b"x", at(51)),
    op("begin_sleep", "pending", SECONDS, "", b"", at(51)),
    op("instance_status", "pending", at(52)),
    op("record_event", "pending", EventType.SUSPENDED, b"", at(53)),
    op("register_instance", "pending", "t", None, at(54)),
]

TABLES = {
    "instances": "SELECT instance_id, tenant_id, status::text, created_at, checkpoint_id, "
    "started_at, finished_at, output, error, sleep_until, last_activity_at, "
    "wake_claimed_until, registration FROM instances ORDER BY instance_id",
    "checkpoints": "SELECT instance_id, checkpoint_id, state, created_at, is_retry_attempt, "
    "attempt_number, error_message FROM checkpoints ORDER BY id",
    "instance_events": "SELECT instance_id, event_type::text, checkpoint_id, payload, subtype, "
    "created_at FROM instance_events ORDER BY id",
    "pending_signals": "SELECT instance_id, signal_type::text, payload, created_at, "
    "acknowledged_at FROM pending_signals ORDER BY instance_id",
    "pending_checkpoint_signals": "SELECT instance_id, checkpoint_id, payload, created_at "
    "FROM pending_checkpoint_signals ORDER BY instance_id, checkpoint_id",
}


def answer(driver, step):
    name, args, kwargs = step
    try:
        return ("returned", getattr(driver, name)(*args, **kwargs))
    except errors.RuntaraError as error:
        return ("raised", type(error), str(error), vars(error))


def rows(url):
    with psycopg.connect(url) as connection:
        return {
            table: connection.execute(sql, binary=True).fetchall() for table, sql in TABLES.items()
        }


@pytest.fixture
def second_url(postgres_cluster):
    schema = postgres_cluster.new_schema()
    yield postgres_cluster.url(schema)
    postgres_cluster.drop_schema(schema)


def test_the_calls_do_what_the_rules_do(postgres_url, second_url):
    calls, rules = PostgresDriver(postgres_url, workers=2), ThroughRules(second_url, workers=2)
    try:
        for driver in (calls, rules):
            driver.migrate()
        differences = []
        for index, step in enumerate(SCRIPT):
            got, expected = answer(calls, step), answer(rules, step)
            if got != expected:
                differences.append((index, step[0], got, expected))
        assert differences == []
        assert rows(postgres_url) == rows(second_url)
    finally:
        calls.close()
        rules.close()


def test_the_script_raises_every_refusal_the_calls_have(postgres_url):
    driver = PostgresDriver(postgres_url, workers=2)
    try:
        driver.migrate()
        answers = [answer(driver, step) for step in SCRIPT]
    finally:
        driver.close()
    raised = {kind for outcome, kind, *_ in answers if outcome == "raised"}
    assert set(refusals.BY_SQLSTATE.values()) <= raised


def test_the_server_says_the_engines_message(postgres_url):
    driver = PostgresDriver(postgres_url, workers=1)
    driver.migrate()
    driver.register_instance("i", "t", None, T0)
    driver.close()
    calls = [
        "SELECT runtara_get_checkpoint('ghost', 'cp', now(), NULL)",
        "SELECT runtara_begin_sleep('i', 1, '', '', now(), 2)",
        "SELECT runtara_register_instance('i', 'other', NULL, now(), NULL)",
        "SELECT runtara_record_event('i', 'completed', '', NULL, now(), NULL, NULL, 1)",
        "SELECT runtara_record_event('i', 'failed', '', 'x', now(), NULL, NULL, 1)",
        "SELECT runtara_begin_sleep('i', 1, '', '', now(), 1)",
    ]
    seen = set()
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        for sql in calls:
            try:
                connection.execute(sql)
            except psycopg.Error as error:
                refused = refusals.refusal(error)
                assert refused is not None, error
                assert error.diag.message_primary == str(refused)
                seen.add(type(refused))
    assert seen == set(refusals.BY_SQLSTATE.values())


def test_concurrent_registrations_of_a_new_id_get_distinct_numbers(postgres_url):
    driver = PostgresDriver(postgres_url, workers=16)
    try:
        driver.migrate()
        barrier = threading.Barrier(16)
        numbers = []

        def register(index):
            barrier.wait()
            numbers.append(driver.register_instance("fresh", "t", None, at(index)))

        threads = [threading.Thread(target=register, args=(i,)) for i in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(numbers) == list(range(1, 17))
        assert driver.run(lambda tx: tx.get_instance("fresh")).registration == 16
        started = driver.run(lambda tx: tx.count_events("fresh"))
        assert started == 16
    finally:
        driver.close()


def test_a_call_aborted_by_a_deadlock_is_sent_again(postgres_url):
    # The call takes the instance's row, then waits for a custom signal's row
    # that another transaction holds while it waits for the instance's row:
    # PostgreSQL aborts the call (it waited first), and the driver sends it again.
    driver = PostgresDriver(f"{postgres_url}%20-cdeadlock_timeout%3D500ms", workers=1)
    try:
        driver.migrate()
        driver.register_instance("i", "t", None, T0)
        driver.run(lambda tx: tx.put_custom_signal("i", "cp", b"for cp", T0))
        outcome = []
        before = driver.stats()
        with psycopg.connect(postgres_url) as other:
            other.execute("SET deadlock_timeout = '10s'")
            other.execute("SELECT 1 FROM pending_checkpoint_signals FOR UPDATE")
            caller = threading.Thread(
                target=lambda: outcome.append(driver.checkpoint("i", "cp", b"s", at(1)))
            )
            caller.start()
            waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted"
            deadline = time.monotonic() + 10
            while other.execute(waiting).fetchone()[0] == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            other.execute("SELECT 1 FROM instances WHERE instance_id = 'i' FOR UPDATE")
            other.commit()
            caller.join(30)
        after = driver.stats()
        assert [(o.found, o.signals.custom.payload) for o in outcome] == [(False, b"for cp")]
        assert driver.get_checkpoint("i", "cp", at(2)) == b"s"
        assert after["operations"] - before["operations"] == 1
        assert after["round_trips"] - before["round_trips"] == 2  # sent twice
    finally:
        driver.close()
