"""The named queries of every SQL dialect: the same names, and the same answers.

One script of steps (a named query, its parameters, the answer expected) runs
on a freshly migrated database of each dialect, inside one transaction that is
rolled back at the end. Every query and fragment of the files must be used by
the script, so a new query needs a parity case here. The one exception is a
dialect's calls of its own server-side functions (``call_*``, PostgreSQL's
operations): they must each be used by that dialect's driver, whose
conformance run holds them to the engine's rules.
"""

from __future__ import annotations

import ast
import datetime as dt
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest

from runtara import errors, records
from runtara.drivers.postgres import PostgresDriver
from runtara.drivers.postgres import operations as postgres_operations
from runtara.drivers.sqlite import SqliteDriver
from runtara.drivers.sqlite.transaction import from_text, to_text
from runtara.storage import migrations, queries, sqlbase

DIALECTS = ("sqlite", "postgresql")
T0 = dt.datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=dt.timezone.utc)
BINARY = bytes([0x00, 0xFF, 0x80, 0x7F])
IGNORE = object()
APPLIED = object()
"""Expect the dialect's own migrations, as shipped (version, name, checksum)."""
CALLS = {"postgresql": Path(postgres_operations.__file__)}
"""The module of each dialect's driver that sends its ``call_*`` queries."""
_TIME_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}$")
INSTANCE_COLUMNS = 13


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def instance_row(instance_id, tenant_id, status, created, **columns) -> tuple:
    names = (
        "checkpoint_id started_at finished_at output error sleep_until "
        "last_activity_at wake_claimed_until"
    ).split()
    registration = columns.get("registration", 0)
    return (
        instance_id,
        tenant_id,
        status,
        created,
        *(columns.get(name) for name in names),
        registration,
    )


def launch_row(instance_id, spec, payload, max_failures, **columns) -> tuple:
    names = (
        "attempt failures resumed_from launched_at next_launch_at claimed_by claimed_until "
        "pid pid_started host registration stop_deadline last_exit queue concurrency_key priority "
        "origin_instance origin_checkpoint parent_instance on_parent_cancel"
    ).split()
    values = {"attempt": 0, "failures": 0, "queue": "default", "priority": 0, **columns}
    return (instance_id, spec, payload, max_failures, *(values.get(name) for name in names))


LAUNCH_ROW_COLUMNS = 24


def new_launch(instance_id, next_launch_at, queue="default", key=None, priority=0) -> Step:
    """Insert a launch due at ``next_launch_at`` (the instance must exist)."""
    params = {
        "instance_id": instance_id,
        "spec": "{}",
        "input": None,
        "max_failures": 3,
        "attempt": 0,
        "next_launch_at": next_launch_at,
        "queue": queue,
        "concurrency_key": key,
        "priority": priority,
        "origin_instance": None,
        "origin_checkpoint": None,
        "parent_instance": None,
        "on_parent_cancel": None,
    }
    return Step("insert_launch", params, 1)


def claim(instance_id) -> Step:
    """A launcher ``me`` claims the launch until at(300), as the launch protocol does."""
    return Step(
        "update_launch",
        {
            "instance_id": instance_id,
            "claimed_by": "me",
            "claimed_until": at(300),
            "attempt": 1,
            "next_launch_at": None,
        },
        1,
        compose=("claimed_by", "claimed_until", "attempt", "next_launch_at"),
        separator=", ",
    )


def release(instance_id) -> Step:
    """The launch's claim is given up: no holder, no end."""
    return Step(
        "update_launch",
        {"instance_id": instance_id, "claimed_by": None, "claimed_until": None},
        1,
        compose=("claimed_by", "claimed_until"),
        separator=", ",
    )


def lapsed(now, due_before, expect) -> Step:
    """The launches whose claim ran out by ``now``, or unwatched sleepers due before ``due_before``."""
    return Step("list_lapsed_launches", {"now": now, "due_before": due_before, "limit": 10}, expect)


def due(now, limit=10) -> dict:
    return {"now": now, "limit": limit}


def queue(name, **limits) -> dict:
    """put_queue's parameters, in the column order of the queue queries."""
    return {
        "name": name,
        "concurrency": None,
        "per_key": None,
        "rate_limit": None,
        "rate_period": None,
        "paused": False,
        **limits,
    }


def queue_row(name, **limits) -> tuple:
    return tuple(int(v) if isinstance(v, bool) else v for v in queue(name, **limits).values())


def schedule(name, **columns) -> dict:
    """put_schedule's parameters, in the column order of the schedule queries."""
    return {
        "name": name,
        "cron": None,
        "every": None,
        "timezone": "UTC",
        "overlap": "skip",
        "catch_up": "none",
        "tenant_id": "t",
        "spec": "{}",
        "input": None,
        "created_at": at(0),
        "next_tick_at": at(0),
        "paused": False,
        "last_tick_at": None,
        "last_instance_id": None,
        "ticks": 0,
        "skipped": 0,
        **columns,
    }


def schedule_row(params: dict) -> tuple:
    return tuple(int(v) if isinstance(v, bool) else v for v in params.values())


NIGHTLY = schedule(
    "nightly",
    cron="0 9 * * *",
    timezone="Europe/Paris",
    catch_up="one",
    spec='{"command": ["x"]}',
    input=BINARY,
    created_at=at(1),
    next_tick_at=at(100),
)
NIGHTLY_TICKED = {
    **NIGHTLY,
    "overlap": "cancel-previous",
    "next_tick_at": at(200),
    "last_tick_at": at(100),
    "last_instance_id": "nightly@2026-03-01T12:01:40Z",
    "ticks": 1,
    "skipped": 2,
}
HOURLY = schedule(
    "hourly", every=3600.0, overlap="allow", catch_up="all", tenant_id="u", next_tick_at=at(50)
)
ALSO = schedule("also", every=60.0, next_tick_at=at(100))
OFF = schedule("off", every=60.0, next_tick_at=at(10), paused=True)


LAUNCH_COLUMNS = tuple(field.name for field in attrs.fields(records.LaunchUpdate))


def ids(rows: list[tuple]) -> list[str]:
    return [row[0] for row in rows]


def listed(*expected_ids: str, columns: int | None = None) -> Callable[[list[tuple]], bool]:
    """A test of the rows: their ids in this order (and, given ``columns``, the
    first row that wide)."""

    def check(rows: list[tuple]) -> bool:
        if ids(rows) != list(expected_ids):
            return False
        return columns is None or len(rows[0]) == columns

    return check


@attrs.frozen
class Step:
    name: str
    params: dict[str, Any] | None = None
    expect: Any = IGNORE
    """An int: the row count of a statement without results; a list: the rows;
    a callable: a test of the rows."""
    compose: tuple[str, ...] | None = None
    """The fragments of the query's slot to fill (None: the query has no slot)."""
    separator: str = " AND "


ALL_COLUMNS = (
    "status",
    "checkpoint_id",
    "started_at",
    "finished_at",
    "output",
    "error",
    "sleep_until",
    "last_activity_at",
    "wake_claimed_until",
    "registration",
)

SCRIPT = [
    # --- the schema (lock_schema begins the transaction the script runs in)
    Step("lock_schema"),
    Step("create_migrations_table"),
    Step("applied_migrations", expect=APPLIED),
    Step("record_migration", {"version": 99, "name": "0099_test.sql", "checksum": "c"}, 1),
    Step("applied_migrations", expect=lambda rows: rows[-1] == (99, "0099_test.sql", "c")),
    Step("migrations_table_exists", expect=[(1,)]),
    Step("probe_write", expect=[(1,)]),
    # --- instances
    Step("create_instance", {"instance_id": "i1", "tenant_id": "a", "now": at(0)}, 1),
    Step("create_instance", {"instance_id": "i1", "tenant_id": "b", "now": at(9)}, 0),
    Step("create_instance", {"instance_id": "i2", "tenant_id": "b", "now": at(1)}, 1),
    Step("create_instance", {"instance_id": "i3", "tenant_id": "a", "now": at(2)}, 1),
    Step("get_instance", {"instance_id": "i1"}, [instance_row("i1", "a", "pending", at(0))]),
    Step("get_instance", {"instance_id": "nope"}, []),
    Step(
        "update_instance",
        {
            "instance_id": "i1",
            "status": "completed",
            "checkpoint_id": "cp-9",
            "started_at": at(1),
            "finished_at": at(5),
            "output": BINARY,
            "error": "bröken",
            "sleep_until": None,
            "last_activity_at": at(4.5),
            "wake_claimed_until": at(7),
            "registration": 3,
        },
        1,
        compose=ALL_COLUMNS,
        separator=", ",
    ),
    Step(
        "get_instance_for_update",
        {"instance_id": "i1"},
        [
            instance_row(
                "i1",
                "a",
                "completed",
                at(0),
                checkpoint_id="cp-9",
                started_at=at(1),
                finished_at=at(5),
                output=BINARY,
                error="bröken",
                last_activity_at=at(4.5),
                wake_claimed_until=at(7),
                registration=3,
            )
        ],
    ),
    Step(
        "update_instance",
        {"instance_id": "i2", "status": "suspended", "sleep_until": at(10)},
        1,
        compose=("status", "sleep_until"),
        separator=", ",
    ),
    Step(
        "update_instance",
        {"instance_id": "i3", "status": "running", "started_at": at(2)},
        1,
        compose=("status", "started_at"),
        separator=", ",
    ),
    Step(
        "update_instance",
        {"instance_id": "nope", "last_activity_at": at(1)},
        0,
        compose=("last_activity_at",),
        separator=", ",
    ),
    Step(
        "list_instances",
        {"limit": 10, "offset": 0},
        listed("i3", "i2", "i1", columns=INSTANCE_COLUMNS),
        compose=(),
    ),
    Step(
        "list_instances",
        {"limit": 1, "offset": 1, "tenant_id": "a"},
        listed("i1"),
        compose=("tenant_id",),
    ),
    Step(
        "list_instances",
        {"limit": 10, "offset": 0, "status": "suspended"},
        listed("i2"),
        compose=("status",),
    ),
    Step(
        "list_instances",
        {"limit": 10, "offset": 0, "tenant_id": "a", "status": "running"},
        listed("i3"),
        compose=("tenant_id", "status"),
    ),
    Step("count_instances", {}, [(3,)], compose=()),
    Step("count_instances", {"tenant_id": "a"}, [(2,)], compose=("tenant_id",)),
    Step(
        "count_instances",
        {"tenant_id": "b", "status": "running"},
        [(0,)],
        compose=("tenant_id", "status"),
    ),
    Step("list_instances_after", {"limit": 2}, listed("i3", "i2"), compose=()),
    Step(
        "list_instances_after",
        {"limit": 10, "after_created_at": at(2), "after_instance_id": "i3"},
        listed("i2", "i1", columns=INSTANCE_COLUMNS),
        compose=("after",),
    ),
    Step(
        "list_instances_after",
        {"limit": 10, "tenant_id": "a", "after_created_at": at(2), "after_instance_id": "i3"},
        listed("i1"),
        compose=("tenant_id", "after"),
    ),
    Step(
        "list_instances_after",
        {"limit": 10, "status": "suspended"},
        listed("i2"),
        compose=("status",),
    ),
    Step(
        "list_instances_before",
        {"limit": 10, "before_created_at": at(0), "before_instance_id": "i1"},
        listed("i2", "i3", columns=INSTANCE_COLUMNS),
        compose=("before",),
    ),
    Step(
        "list_instances_before",
        {"limit": 1, "tenant_id": "a", "before_created_at": at(0), "before_instance_id": "i1"},
        listed("i3"),
        compose=("tenant_id", "before"),
    ),
    Step(
        "list_instances_before",
        {"limit": 10, "status": "running", "before_created_at": at(1), "before_instance_id": "i2"},
        listed("i3"),
        compose=("status", "before"),
    ),
    Step("count_instances_up_to", {"at_most": 2}, [(2,)], compose=()),
    Step("count_instances_up_to", {"at_most": 9, "tenant_id": "a"}, [(2,)], compose=("tenant_id",)),
    Step("count_instances_up_to", {"at_most": 9, "status": "running"}, [(1,)], compose=("status",)),
    Step(
        "select_due_sleepers",
        {"due_before": at(100), "limit": 10},
        [instance_row("i2", "b", "suspended", at(1), sleep_until=at(10))],
    ),
    Step("select_due_sleepers", {"due_before": at(9), "limit": 10}, []),
    Step(
        "list_stale_instances",
        {"cutoff": at(50), "limit": 10},
        listed("i3"),
    ),
    Step("list_stale_instances", {"cutoff": at(1), "limit": 10}, []),
    # --- launches (i2 is suspended, i3 running)
    Step(
        "insert_launch",
        {
            "instance_id": "i2",
            "spec": '{"command": ["x"]}',
            "input": BINARY,
            "max_failures": 3,
            "attempt": 0,
            "next_launch_at": at(20),
            "queue": "default",
            "concurrency_key": None,
            "priority": 0,
            "origin_instance": None,
            "origin_checkpoint": None,
            "parent_instance": None,
            "on_parent_cancel": None,
        },
        1,
    ),
    Step(
        "insert_launch",
        {
            "instance_id": "i3",
            "spec": "{}",
            "input": None,
            "max_failures": 5,
            "attempt": 0,
            "next_launch_at": at(30),
            "queue": "default",
            "concurrency_key": "k3",
            "priority": 0,
            # i3 is a fork of i2 at its checkpoint cp0
            "origin_instance": "i2",
            "origin_checkpoint": "cp0",
            # ... and a child of i2, stopped when i2 is
            "parent_instance": "i2",
            "on_parent_cancel": "cancel",
        },
        1,
    ),
    # i2's children: i3, with every column; i3 has none
    Step(
        "list_children",
        {"parent_instance": "i2"},
        [
            launch_row(
                "i3",
                "{}",
                None,
                5,
                next_launch_at=at(30),
                concurrency_key="k3",
                origin_instance="i2",
                origin_checkpoint="cp0",
                parent_instance="i2",
                on_parent_cancel="cancel",
            )
        ],
    ),
    Step("list_children", {"parent_instance": "i3"}, []),
    Step(
        "get_launch",
        {"instance_id": "i2"},
        [launch_row("i2", '{"command": ["x"]}', BINARY, 3, next_launch_at=at(20))],
    ),
    Step("get_launch", {"instance_id": "nope"}, []),
    # a launched sleeper is its launcher's to wake, not the wake command's
    Step("select_due_sleepers", {"due_before": at(100), "limit": 10}, []),
    Step("select_due_launches", {"now": at(25), "limit": 10}, [("i2",)]),
    Step("select_due_launches", {"now": at(35), "limit": 1}, [("i2",)]),
    # a claim: a compare-and-set on the holder (none, attempt 0)
    Step(
        "update_launch_held",
        {
            "instance_id": "i2",
            "held_by": None,
            "held_attempt": 0,
            "claimed_by": "me",
            "claimed_until": at(40),
            "attempt": 1,
            "resumed_from": "cp0",
            "next_launch_at": None,
        },
        1,
        compose=("claimed_by", "claimed_until", "attempt", "resumed_from", "next_launch_at"),
        separator=", ",
    ),
    # the same condition again no longer holds
    Step(
        "update_launch_held",
        {"instance_id": "i2", "held_by": None, "held_attempt": 0, "claimed_by": "other"},
        0,
        compose=("claimed_by",),
        separator=", ",
    ),
    Step(
        "update_launch_held",
        {"instance_id": "i2", "held_by": "other", "held_attempt": 1, "claimed_by": "other"},
        0,
        compose=("claimed_by",),
        separator=", ",
    ),
    Step(
        "get_launch",
        {"instance_id": "i2"},
        [
            launch_row(
                "i2",
                '{"command": ["x"]}',
                BINARY,
                3,
                attempt=1,
                resumed_from="cp0",
                claimed_by="me",
                claimed_until=at(40),
            )
        ],
    ),
    Step("select_due_launches", {"now": at(35), "limit": 10}, [("i3",)]),
    Step(
        "update_launch",
        {
            "instance_id": "i3",
            "spec": '{"command": ["y"]}',
            "input": BINARY,
            "attempt": 2,
            "failures": 1,
            "resumed_from": "cp1",
            "launched_at": at(31),
            "next_launch_at": None,
            "claimed_by": "other",
            "claimed_until": at(50),
            "pid": 4321,
            "pid_started": 98765432100,
            "host": "box",
            "registration": 7,
            "stop_deadline": at(60),
            "last_exit": "exited with code 1",
        },
        1,
        compose=LAUNCH_COLUMNS,
        separator=", ",
    ),
    Step(
        "get_launch",
        {"instance_id": "i3"},
        [
            launch_row(
                "i3",
                '{"command": ["y"]}',
                BINARY,
                5,
                attempt=2,
                failures=1,
                resumed_from="cp1",
                launched_at=at(31),
                claimed_by="other",
                claimed_until=at(50),
                pid=4321,
                pid_started=98765432100,
                host="box",
                registration=7,
                stop_deadline=at(60),
                last_exit="exited with code 1",
                concurrency_key="k3",
                origin_instance="i2",
                origin_checkpoint="cp0",
                parent_instance="i2",
                on_parent_cancel="cancel",
            )
        ],
    ),
    # renewal: a compare-and-set of the claim's end
    Step(
        "update_launch_held",
        {"instance_id": "i2", "held_by": "me", "held_attempt": 1, "claimed_until": at(45)},
        1,
        compose=("claimed_until",),
        separator=", ",
    ),
    Step("list_claimed_launches", {"claimed_by": "me", "limit": 10}, listed("i2")),
    Step("list_claimed_launches", {"claimed_by": "nobody", "limit": 10}, []),
    # claims that ran out; a running instance whose launch nobody holds
    lapsed(now=at(44), due_before=at(0), expect=[]),
    lapsed(now=at(45), due_before=at(0), expect=listed("i2")),
    lapsed(
        now=at(50),
        due_before=at(0),
        expect=listed("i2", "i3", columns=LAUNCH_ROW_COLUMNS),
    ),
    release("i3"),
    lapsed(now=at(0), due_before=at(0), expect=listed("i3")),
    # an unwatched sleeper is lapsed once its wake time is before due_before
    release("i2"),
    lapsed(now=at(0), due_before=at(9), expect=listed("i3")),
    lapsed(now=at(0), due_before=at(10), expect=listed("i2", "i3")),
    Step("list_finished_before", {"cutoff": at(6), "limit": 10}, [("i1",)]),
    Step("list_finished_before", {"cutoff": at(5), "limit": 10}, []),
    # --- queues: the order of due launches (no queue rows: no limits)
    *(
        Step("create_instance", {"instance_id": name, "tenant_id": "q", "now": at(100)}, 1)
        for name in ("a1", "a2", "a3", "a4", "a5", "h1", "c1", "c2", "k1", "k2", "k3", "k4", "r1")
    ),
    new_launch("a1", at(100), key="x"),
    new_launch("a2", at(101), key="x"),
    new_launch("a3", at(102), key="y"),
    new_launch("a4", at(110), priority=5),
    new_launch("a5", at(100.5), queue="other", key="x"),
    Step(
        "get_launch",
        {"instance_id": "a5"},
        [
            launch_row(
                "a5", "{}", None, 3, next_launch_at=at(100.5), queue="other", concurrency_key="x"
            )
        ],
    ),
    # the highest priority first, however late; then each (queue, priority, key)
    # gives its earliest in turn: a2 waits behind a3 (key y) and a5 (key x of
    # another queue), though due before them
    Step("select_due_launches", due(at(200)), [("a4",), ("a1",), ("a5",), ("a3",), ("a2",)]),
    Step("select_due_launches", due(at(200), limit=2), [("a4",), ("a1",)]),
    Step("select_due_launches", due(at(101)), [("a1",), ("a5",), ("a2",)]),
    # deleting an instance takes its launch
    *(Step("delete_instance", {"instance_id": name}, 1) for name in ("a1", "a2", "a3", "a4", "a5")),
    Step("get_launch", {"instance_id": "a1"}, []),
    Step("select_due_launches", due(at(200)), []),
    # --- queues: their rows
    Step("get_queue", {"name": "slow"}, []),
    Step("list_queues", {}, []),
    Step("lock_queues", {}, []),
    Step("put_queue", queue("slow", concurrency=2, paused=True), 1),
    Step("get_queue", {"name": "slow"}, [queue_row("slow", concurrency=2, paused=True)]),
    Step("put_queue", queue("slow", concurrency=1), 1),  # an upsert: replaces every limit
    Step("get_queue", {"name": "slow"}, [queue_row("slow", concurrency=1)]),
    Step("put_queue", queue("keyed", per_key=1), 1),
    Step("put_queue", queue("rated", rate_limit=1, rate_period=10.0), 1),
    Step("put_queue", queue("held", paused=True), 1),
    Step(
        "list_queues",
        {},
        [
            queue_row("held", paused=True),
            queue_row("keyed", per_key=1),
            queue_row("rated", rate_limit=1, rate_period=10.0),
            queue_row("slow", concurrency=1),
        ],
    ),
    Step(
        "get_queue_for_update",
        {"name": "rated"},
        [queue_row("rated", rate_limit=1, rate_period=10.0)],
    ),
    Step("get_queue_for_update", {"name": "nope"}, []),
    Step("get_queue", {"name": "default"}, []),
    Step("lock_queues", {}, [("held",), ("keyed",), ("rated",), ("slow",)]),
    # --- queues: their limits hold due launches back
    new_launch("h1", at(120), queue="held"),
    new_launch("c1", at(121), queue="slow"),
    new_launch("c2", at(122), queue="slow"),
    new_launch("k1", at(123), queue="keyed", key="x"),
    new_launch("k2", at(124), queue="keyed", key="x"),
    new_launch("k3", at(125), queue="keyed", key="y"),
    new_launch("k4", at(126), queue="keyed"),
    new_launch("r1", at(127), queue="rated"),
    # nothing claimed yet: only the paused queue's h1 is left out
    Step(
        "select_due_launches",
        due(at(200)),
        [("c1",), ("k1",), ("k3",), ("k4",), ("r1",), ("c2",), ("k2",)],
    ),
    Step("count_queue_claimed", {"queue": "slow"}, [(0,)]),
    Step("count_key_claimed", {"queue": "keyed", "concurrency_key": "x"}, [(0,)]),
    Step("count_queue_starts", {"queue": "rated", "now": at(200)}, [(0,)]),
    claim("c1"),
    claim("k1"),
    Step("insert_queue_start", {"queue": "rated", "expires_at": at(210)}, 1),
    Step("count_queue_claimed", {"queue": "slow"}, [(1,)]),
    Step("count_queue_claimed", {"queue": "keyed"}, [(1,)]),
    Step("count_queue_claimed", {"queue": "held"}, [(0,)]),
    Step("count_key_claimed", {"queue": "keyed", "concurrency_key": "x"}, [(1,)]),
    Step("count_key_claimed", {"queue": "keyed", "concurrency_key": "y"}, [(0,)]),
    Step("count_key_claimed", {"queue": "slow", "concurrency_key": "x"}, [(0,)]),
    Step("count_queue_starts", {"queue": "rated", "now": at(209)}, [(1,)]),
    Step("count_queue_starts", {"queue": "rated", "now": at(210)}, [(0,)]),
    Step("count_queue_starts", {"queue": "slow", "now": at(200)}, [(0,)]),
    Step(
        "get_launch",
        {"instance_id": "k1"},
        [
            launch_row(
                "k1",
                "{}",
                None,
                3,
                attempt=1,
                claimed_by="me",
                claimed_until=at(300),
                queue="keyed",
                concurrency_key="x",
            )
        ],
    ),
    Step(
        "list_claimed_launches",
        {"claimed_by": "me", "limit": 10},
        lambda rows: (
            ids(rows) == ["c1", "k1"]
            and [row[LAUNCH_ROW_COLUMNS - 7 : LAUNCH_ROW_COLUMNS - 4] for row in rows]
            == [("slow", None, 0), ("keyed", "x", 0)]
        ),
    ),
    # slow is full (c2 held back), key x of keyed is full (k2 held back, not k3
    # nor the keyless k4), and rated started one in the last 10 seconds (r1)
    Step("select_due_launches", due(at(200)), [("k3",), ("k4",)]),
    # once the start expires, the rate limit lets r1 through
    Step("select_due_launches", due(at(210)), [("k3",), ("k4",), ("r1",)]),
    # resuming held and letting slow run two: h1 and c2 come back (c2 takes
    # the first turn of slow: the claimed c1 is no candidate)
    Step("put_queue", queue("held"), 1),
    Step("put_queue", queue("slow", concurrency=2), 1),
    Step("get_queue", {"name": "held"}, [queue_row("held")]),
    Step(
        "select_due_launches",
        due(at(210)),
        [("h1",), ("c2",), ("k3",), ("k4",), ("r1",)],
    ),
    # per queue: claimed, due now, due later (at(125): k4 and r1 are later)
    Step(
        "queue_figures",
        {"now": at(125)},
        [("held", 0, 1, 0), ("keyed", 1, 2, 1), ("rated", 0, 0, 1), ("slow", 1, 1, 0)],
    ),
    Step(
        "queue_figures",
        {"now": at(0)},
        [("held", 0, 0, 1), ("keyed", 1, 0, 3), ("rated", 0, 0, 1), ("slow", 1, 0, 1)],
    ),
    # the claims ran out at(300): c1 and k1 are lapsed, with the running i3
    lapsed(
        now=at(300),
        due_before=at(0),
        expect=listed("c1", "i3", "k1", columns=LAUNCH_ROW_COLUMNS),
    ),
    Step("delete_expired_queue_starts", {"queue": "rated", "now": at(209)}, 0),
    Step("delete_expired_queue_starts", {"queue": "slow", "now": at(210)}, 0),
    Step("delete_expired_queue_starts", {"queue": "rated", "now": at(210)}, 1),
    Step("count_queue_starts", {"queue": "rated", "now": at(0)}, [(0,)]),
    # --- schedules
    Step("get_schedule", {"name": "nightly"}, []),
    Step("list_schedules", {}, []),
    Step("put_schedule", NIGHTLY, 1),
    Step("put_schedule", HOURLY, 1),
    Step("put_schedule", ALSO, 1),
    Step("put_schedule", OFF, 1),
    Step("get_schedule", {"name": "nightly"}, [schedule_row(NIGHTLY)]),
    Step("get_schedule", {"name": "hourly"}, [schedule_row(HOURLY)]),
    # due first those due longest, then by name; the paused off never
    Step("select_due_schedules", due(at(100)), [("hourly",), ("also",), ("nightly",)]),
    Step("select_due_schedules", due(at(100), limit=2), [("hourly",), ("also",)]),
    Step("select_due_schedules", due(at(99)), [("hourly",)]),
    Step("select_due_schedules", due(at(49)), []),
    # after a tick: the upsert replaces every column
    Step("put_schedule", NIGHTLY_TICKED, 1),
    Step("get_schedule_for_update", {"name": "nightly"}, [schedule_row(NIGHTLY_TICKED)]),
    Step("get_schedule_for_update", {"name": "nope"}, []),
    Step("select_due_schedules", due(at(100)), [("hourly",), ("also",)]),
    Step("select_due_schedules", due(at(200)), [("hourly",), ("also",), ("nightly",)]),
    Step(
        "list_schedules",
        {},
        [schedule_row(s) for s in (ALSO, HOURLY, NIGHTLY_TICKED, OFF)],
    ),
    Step("put_schedule", {**OFF, "paused": False}, 1),
    Step("select_due_schedules", due(at(100), limit=1), [("off",)]),
    Step("delete_schedule", {"name": "hourly"}, 1),
    Step("delete_schedule", {"name": "hourly"}, 0),
    Step("get_schedule", {"name": "hourly"}, []),
    Step("list_schedules", {}, listed("also", "nightly", "off")),
    # --- checkpoints
    Step(
        "insert_checkpoint",
        {"instance_id": "i1", "checkpoint_id": "cp0", "state": BINARY, "now": at(0)},
        1,
    ),
    Step(
        "insert_checkpoint",
        {"instance_id": "i1", "checkpoint_id": "cp0", "state": b"other", "now": at(9)},
        0,
    ),
    Step(
        "insert_checkpoint",
        {"instance_id": "i1", "checkpoint_id": "cp1", "state": b"x", "now": at(1)},
        1,
    ),
    Step(
        "insert_checkpoint",
        {"instance_id": "i1", "checkpoint_id": "cp2", "state": b"", "now": at(2)},
        1,
    ),
    Step("get_checkpoint", {"instance_id": "i1", "checkpoint_id": "cp0"}, [(BINARY, at(0))]),
    Step("get_checkpoint", {"instance_id": "i2", "checkpoint_id": "cp0"}, []),
    Step(
        "save_retry_attempt",
        {
            "instance_id": "i1",
            "checkpoint_id": "step::retry::2",
            "state": b"boom",
            "now": at(3),
            "attempt": 2,
            "error_message": "boom",
        },
        1,
    ),
    Step(
        "save_retry_attempt",
        {
            "instance_id": "i1",
            "checkpoint_id": "step::retry::2",
            "state": b"again",
            "now": at(4),
            "attempt": 3,
            "error_message": "again",
        },
        1,
    ),
    Step(
        "get_checkpoint",
        {"instance_id": "i1", "checkpoint_id": "step::retry::2"},
        [(b"again", at(4))],
    ),
    Step(
        "list_checkpoints",
        {"instance_id": "i1", "limit": 10, "offset": 0},
        [
            ("step::retry::2", 5, at(4)),
            ("cp2", 0, at(2)),
            ("cp1", 1, at(1)),
            ("cp0", 4, at(0)),
        ],
        compose=(),
    ),
    Step(
        "list_checkpoints",
        {"instance_id": "i1", "limit": 10, "offset": 0, "checkpoint_id": "cp1"},
        [("cp1", 1, at(1))],
        compose=("checkpoint_id",),
    ),
    Step(
        "list_checkpoints",
        {
            "instance_id": "i1",
            "limit": 1,
            "offset": 1,
            "created_after": at(0),
            "created_before": at(4),
        },
        [("cp1", 1, at(1))],
        compose=("created_after", "created_before"),
    ),
    Step("count_checkpoints", {"instance_id": "i1"}, [(4,)], compose=()),
    Step(
        "count_checkpoints",
        {"instance_id": "i1", "created_before": at(2)},
        [(2,)],
        compose=("created_before",),
    ),
    Step(
        "count_checkpoints",
        {"instance_id": "i1", "checkpoint_id": "nope", "created_after": at(0)},
        [(0,)],
        compose=("checkpoint_id", "created_after"),
    ),
    # --- events
    *(
        Step(
            "insert_event",
            {
                "instance_id": "i1",
                "event_type": kind,
                "checkpoint_id": checkpoint_id,
                "payload": payload,
                "created_at": at(seconds),
                "subtype": subtype,
            },
            lambda rows: len(rows) == 1 and rows[0][0] >= 1,
        )
        for kind, checkpoint_id, payload, seconds, subtype in (
            ("heartbeat", None, None, 0, None),
            ("custom", "cp1", b'{"Order": 17}', 1, "a"),
            ("custom", None, BINARY, 2, "b"),
            ("custom", None, b"ORDER shipped", 2, "a"),
        )
    ),
    Step(
        "list_events",
        {"instance_id": "i1", "limit": 10, "offset": 0},
        lambda rows: (
            [(row[2], row[3], row[4], row[5], row[6]) for row in rows]
            == [
                ("custom", None, b"ORDER shipped", at(2), "a"),
                ("custom", None, BINARY, at(2), "b"),
                ("custom", "cp1", b'{"Order": 17}', at(1), "a"),
                ("heartbeat", None, None, at(0), None),
            ]
            and rows[0][0] > rows[1][0] > rows[2][0] > rows[3][0]
            and {row[1] for row in rows} == {"i1"}
        ),
        compose=(),
    ),
    Step(
        "list_events",
        {"instance_id": "i1", "limit": 10, "offset": 0, "event_type": "heartbeat"},
        lambda rows: [row[2] for row in rows] == ["heartbeat"],
        compose=("event_type",),
    ),
    Step(
        "list_events",
        {"instance_id": "i1", "limit": 1, "offset": 1, "subtype": "a"},
        lambda rows: [row[4] for row in rows] == [b'{"Order": 17}'],
        compose=("subtype",),
    ),
    Step(
        "list_events",
        {"instance_id": "i1", "limit": 10, "offset": 0, "payload_contains": "order"},
        lambda rows: [row[4] for row in rows] == [b"ORDER shipped", b'{"Order": 17}'],
        compose=("payload_contains",),
    ),
    Step(
        "count_events",
        {"instance_id": "i1", "created_after": at(1), "created_before": at(2)},
        [(1,)],
        compose=("created_after", "created_before"),
    ),
    Step(
        "count_events",
        {"instance_id": "i1", "payload_contains": "%", "subtype": "a"},
        [(0,)],
        compose=("subtype", "payload_contains"),
    ),
    Step("count_events", {"instance_id": "i1"}, [(4,)], compose=()),
    # --- signals
    Step(
        "put_signal",
        {"instance_id": "i1", "signal_type": "pause", "payload": b"p", "now": at(0)},
        1,
    ),
    Step("get_pending_signal", {"instance_id": "i1"}, [("pause", b"p", at(0))]),
    Step("acknowledge_signal", {"instance_id": "i1", "signal_type": "cancel", "now": at(1)}, 0),
    Step("acknowledge_signal", {"instance_id": "i1", "signal_type": "pause", "now": at(1)}, 1),
    Step("acknowledge_signal", {"instance_id": "i1", "signal_type": "pause", "now": at(2)}, 0),
    Step("get_pending_signal", {"instance_id": "i1"}, []),
    Step(
        "put_signal",
        {"instance_id": "i1", "signal_type": "resume", "payload": b"", "now": at(3)},
        1,
    ),
    Step("get_pending_signal", {"instance_id": "i1"}, [("resume", b"", at(3))]),
    Step(
        "put_custom_signal",
        {"instance_id": "i1", "checkpoint_id": "approve", "payload": b"old", "now": at(0)},
        1,
    ),
    Step(
        "put_custom_signal",
        {"instance_id": "i1", "checkpoint_id": "approve", "payload": BINARY, "now": at(1)},
        1,
    ),
    Step(
        "put_custom_signal",
        {"instance_id": "i1", "checkpoint_id": "other", "payload": b"", "now": at(2)},
        1,
    ),
    Step(
        "list_custom_signals",
        {"instance_id": "i1"},
        [("approve", BINARY, at(1)), ("other", b"", at(2))],
    ),
    Step(
        "take_custom_signal",
        {"instance_id": "i1", "checkpoint_id": "approve"},
        [(BINARY, at(1))],
    ),
    Step("take_custom_signal", {"instance_id": "i1", "checkpoint_id": "approve"}, []),
    # --- deleting takes everything the instance owns
    Step("delete_instance", {"instance_id": "i1"}, 1),
    Step("delete_instance", {"instance_id": "i1"}, 0),
    Step("count_checkpoints", {"instance_id": "i1"}, [(0,)], compose=()),
    Step("count_events", {"instance_id": "i1"}, [(0,)], compose=()),
    Step("get_pending_signal", {"instance_id": "i1"}, []),
    Step("list_custom_signals", {"instance_id": "i1"}, []),
    # --- a batch of prune: finished before the cutoff, oldest first, up to the limit
    *(
        Step("create_instance", {"instance_id": name, "tenant_id": "p", "now": at(0)}, 1)
        for name in ("f1", "f2", "f3")
    ),
    *(
        Step(
            "update_instance",
            {"instance_id": name, "status": status, "finished_at": at(end)},
            1,
            compose=("status", "finished_at"),
            separator=", ",
        )
        for name, status, end in (("f1", "completed", 3), ("f2", "failed", 2), ("f3", "running", 1))
    ),
    Step("delete_finished_before", {"cutoff": at(4), "limit": 1}, [("f2",)]),
    Step("delete_finished_before", {"cutoff": at(4), "limit": 10}, [("f1",)]),
    Step("delete_finished_before", {"cutoff": at(4), "limit": 10}, []),
    Step("get_instance", {"instance_id": "f3"}, lambda rows: len(rows) == 1),
]


# --- running the script ----------------------------------------------------------


@attrs.define
class Database:
    """A migrated database of one dialect, and how a statement runs on it."""

    dialect: str
    connection: Any
    time: Callable[[dt.datetime], Any]

    def run(self, sql: str, params: dict[str, Any] | None) -> tuple[list | None, int]:
        if params is None:
            cursor = self.connection.execute(sql)
        else:
            converted = {
                key: self.time(value) if isinstance(value, dt.datetime) else value
                for key, value in params.items()
            }
            if self.dialect == "postgresql":
                cursor = self.connection.execute(sql, converted, binary=True)
            else:
                cursor = self.connection.execute(sql, converted)
        rows = None if cursor.description is None else cursor.fetchall()
        return rows, cursor.rowcount


def normal(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc)
    if isinstance(value, str) and _TIME_TEXT.match(value):
        return from_text(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, bool):
        return int(value)
    return value


@pytest.fixture(params=DIALECTS)
def database(request, tmp_path):
    if request.param == "sqlite":
        path = tmp_path / "parity.db"
        driver = SqliteDriver(f"sqlite:{path}")
        driver.migrate()
        driver.close()
        connection = sqlite3.connect(path, isolation_level=None)
        connection.execute("PRAGMA foreign_keys = ON")
        yield Database("sqlite", connection, to_text)
    else:
        url = request.getfixturevalue("postgres_url")
        driver = PostgresDriver(url, workers=1)
        driver.migrate()
        driver.close()
        connection = psycopg.connect(url, autocommit=True)
        yield Database("postgresql", connection, lambda value: value)
    connection.close()


def test_every_named_query_gives_the_same_answers_in_every_dialect(database):
    named = queries.load(database.dialect)
    failures = []
    try:
        for index, step in enumerate(SCRIPT):
            if step.compose is None:
                sql = named[step.name]
            else:
                sql = named.compose(step.name, step.compose, step.separator)
            rows, count = database.run(sql, step.params)
            if rows is not None:
                rows = [tuple(normal(value) for value in row) for row in rows]
            expect = step.expect
            if expect is IGNORE:
                continue
            if expect is APPLIED:
                expect = [
                    (m.version, m.name, m.checksum) for m in migrations.load(database.dialect)
                ]
            if isinstance(expect, int):
                ok = rows is None and count == expect
            elif callable(expect):
                ok = rows is not None and expect(rows)
            else:
                ok = rows == expect
            if not ok:
                failures.append(
                    f"step {index} {step.name}: got {rows if rows is not None else count}"
                )
    finally:
        database.connection.rollback()
    assert failures == []


def test_retry_attempts_keep_the_latest_attempt_number_in_every_dialect(database):
    named = queries.load(database.dialect)
    database.run(named["lock_schema"], None)
    try:
        database.run(named["create_instance"], {"instance_id": "i", "tenant_id": "t", "now": at(0)})
        for attempt, message in ((2, "first"), (3, "second")):
            database.run(
                named["save_retry_attempt"],
                {
                    "instance_id": "i",
                    "checkpoint_id": "step::retry::2",
                    "state": message.encode(),
                    "now": at(attempt),
                    "attempt": attempt,
                    "error_message": message,
                },
            )
        rows, _ = database.run(
            "SELECT attempt_number, error_message, is_retry_attempt FROM checkpoints", None
        )
        assert [tuple(normal(value) for value in row) for row in rows] == [(3, "second", 1)]
    finally:
        database.connection.rollback()


# --- the names ---------------------------------------------------------------------


def step_names(step: Step, named: queries.Queries) -> set[str]:
    names = {step.name}
    if step.compose is not None:
        family = named.slot(step.name)
        names |= {f"{family}.{key}" for key in step.compose}
    return names


def calls(named: queries.Queries) -> set[str]:
    """The dialect's calls of its own server-side functions."""
    return {name for name in named if name.startswith("call_")}


def calls_sent(dialect: str) -> set[str]:
    """The ``call_*`` names the dialect's driver passes to its ``_call``."""
    if dialect not in CALLS:
        return set()
    tree = ast.parse(CALLS[dialect].read_text())
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "_call"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }


def test_every_dialect_defines_the_same_names():
    loaded = {dialect: queries.load(dialect) for dialect in DIALECTS}
    shared = {dialect: set(named) - calls(named) for dialect, named in loaded.items()}
    assert shared["sqlite"] == shared["postgresql"]
    assert calls(loaded["sqlite"]) == set()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_script_uses_every_query_and_fragment(dialect):
    named = queries.load(dialect)
    used = set().union(*(step_names(step, named) for step in SCRIPT))
    assert used == set(named) - calls(named)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_driver_sends_every_call_of_its_dialect(dialect):
    named = queries.load(dialect)
    assert calls_sent(dialect) == calls(named)


def test_each_operation_postgresql_replaces_is_one_call():
    replaced = {
        name
        for name, value in vars(postgres_operations.ServerSideOperations).items()
        if callable(value) and not name.startswith("_")
    }
    assert len(replaced) == 10
    assert {f"call_{name}" for name in replaced} == calls(queries.load("postgresql"))


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_slot_has_exactly_the_fragments_the_base_fills(dialect):
    named = queries.load(dialect)
    families = {
        "instance_filter": sqlbase.INSTANCE_FILTERS,
        "page_filter": sqlbase.PAGE_FILTERS,
        "checkpoint_filter": sqlbase.CHECKPOINT_FILTERS,
        "event_filter": sqlbase.EVENT_FILTERS,
        "assign": tuple(field.name for field in attrs.fields(records.InstanceUpdate)),
        "launch_assign": LAUNCH_COLUMNS,
    }
    slots = {named.slot(name) for name in named if "." not in name} - {None}
    assert slots == set(families)
    fragments = {name for name in named if "." in name}
    assert fragments == {f"{family}.{key}" for family, keys in families.items() for key in keys}


def test_every_query_name_the_base_uses_exists():
    tree = ast.parse(Path(sqlbase.__file__).read_text())
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            target = node.func.attr if isinstance(node.func, ast.Attribute) else None
            first = node.args[0]
            if target in {
                "_rows",
                "_one",
                "_changed",
                "_filtered",
                "compose",
                "_checkpoint_rows",
                "_event_rows",
            } and isinstance(first, ast.Constant):
                used.add(first.value)
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            holder = node.value
            name = holder.attr if isinstance(holder, ast.Attribute) else getattr(holder, "id", "")
            if name in {"queries", "_queries"}:
                used.add(node.slice.value)
        elif isinstance(node, ast.IfExp):
            for branch in (node.body, node.orelse):
                if isinstance(branch, ast.Constant) and isinstance(branch.value, str):
                    used.add(branch.value)
    assert len(used) > 20  # the scan found the names
    for dialect in DIALECTS:
        assert used - set(queries.load(dialect)) == set(), dialect


def test_a_malformed_queries_file_is_refused():
    with pytest.raises(errors.MigrationError, match="defined twice"):
        queries.parse("-- name: a\nSELECT 1\n-- name: a\nSELECT 2\n")
    with pytest.raises(errors.MigrationError, match="is empty"):
        queries.parse("-- name: a\n-- only a comment\n")
    with pytest.raises(errors.MigrationError, match="before the first name"):
        queries.parse("SELECT 1\n-- name: a\nSELECT 2\n")
    assert queries.parse("-- name: a\n-- about a\nSELECT 1\nFROM t\n") == {"a": "SELECT 1\nFROM t"}


def test_each_dialect_writes_the_shared_sql_in_its_own_terms():
    shared = "SELECT a::text, '50%' FROM t WHERE b = :b AND c = :c_2\nFOR UPDATE OF t SKIP LOCKED"
    assert queries.DIALECTS["postgresql"](shared) == (
        "SELECT a::text, '50%%' FROM t WHERE b = %(b)s AND c = %(c_2)s\nFOR UPDATE OF t SKIP LOCKED"
    )
    assert queries.DIALECTS["sqlite"](shared) == (
        "SELECT a::text, '50%' FROM t WHERE b = :b AND c = :c_2"
    )


def test_a_dialects_own_entry_replaces_the_shared_one_and_pieces_are_written_in(
    tmp_path, monkeypatch
):
    package = tmp_path / "shipped_queries"
    (package / "postgresql").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "queries.sql").write_text(
        "-- name: same\nSELECT :x\n-- name: differs\nSELECT instr(:x, 'a')\n"
        "-- name: columns\na, b\n-- name: pieced\nSELECT {columns} FROM t WHERE {filter}\n"
    )
    (package / "postgresql" / "queries.sql").write_text(
        "-- name: differs\nSELECT strpos(:x, 'a')\n-- name: call_own\nSELECT f(:x)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = queries.load("postgresql", package="shipped_queries")
    assert dict(loaded) == {
        "same": "SELECT %(x)s",
        "differs": "SELECT strpos(%(x)s, 'a')",
        "pieced": "SELECT a, b FROM t WHERE {filter}",
        "call_own": "SELECT f(%(x)s)",
    }
    assert loaded.slot("pieced") == "filter"


def test_an_unknown_dialect_is_refused():
    with pytest.raises(
        errors.MigrationError, match="no named queries for the SQL dialect 'oracle'"
    ):
        queries.load("oracle")
