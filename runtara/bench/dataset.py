"""The ``data`` scenario's store: a realistic data set, bulk-loaded through the driver.

Finished instances (completed, failed, cancelled) over the past month, each
with a few checkpoints and events and, for half of them, the launch that ran
them; instances asleep until some time in the coming week (a few of them due
already), half with a launch due at their wake time and half for the wake
command; pending instances whose launches are due now. Tenants, durations and
outcomes vary from one instance to the next (a seeded random draw, so two
loads of one size are alike).

The rows go in through the driver's own transactions, many instances per
transaction and hundreds of rows per INSERT
(:meth:`~runtara.storage.sqlbase.SqlTransaction.insert_rows`), rather than
one engine operation at a time: a million instances load in minutes instead
of hours.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable, Iterator

import attrs

from runtara import errors
from runtara.launcher.spec import LaunchSpec
from runtara.storage import base, sqlbase

FINISHED = 1_000_000
TENANTS = 20
CHECKPOINTS_PER_FINISHED = 3
EVENTS_PER_FINISHED = 4
STATE_SIZE = 256
"""Bytes of each loaded checkpoint's state."""
INSTANCES_PER_TRANSACTION = 2000
ROWS_PER_INSERT = 500
HISTORY = dt.timedelta(days=30)
"""How far back the finished instances were created."""
SLEEP_HORIZON = dt.timedelta(days=7)
DUE_SHARE = 0.01
"""Of the sleepers, those whose wake time has passed already."""

INSTANCE_COLUMNS = (
    "instance_id",
    "tenant_id",
    "status",
    "checkpoint_id",
    "created_at",
    "started_at",
    "finished_at",
    "last_activity_at",
    "sleep_until",
    "output",
    "error",
)
CHECKPOINT_COLUMNS = ("instance_id", "checkpoint_id", "state", "created_at")
EVENT_COLUMNS = ("instance_id", "event_type", "checkpoint_id", "payload", "created_at")
LAUNCH_COLUMNS = (
    "instance_id",
    "spec",
    "max_failures",
    "attempt",
    "next_launch_at",
    "launched_at",
    "last_exit",
)
SPEC = LaunchSpec(("/usr/bin/env", "python3", "workflow.py")).to_json()


@attrs.frozen
class Size:
    """How many instances of each kind the data set holds."""

    finished: int = FINISHED
    sleeping: int = FINISHED // 10
    pending: int = FINISHED // 100

    @classmethod
    def scaled(cls, finished: int) -> Size:
        """``finished`` finished instances, with a tenth as many asleep and a
        hundredth pending (the proportions of the default size)."""
        if finished < 1:
            raise errors.ConfigError(f"the data set needs at least one instance, not {finished}")
        return cls(finished, max(1, finished // 10), max(1, finished // 100))


@attrs.frozen
class Loaded:
    size: Size
    seconds: float
    rows: dict[str, int]
    """Rows written per table."""

    @property
    def rows_per_second(self) -> float:
        return sum(self.rows.values()) / self.seconds if self.seconds else 0.0


@attrs.define
class _Batch:
    instances: list[tuple] = attrs.Factory(list)
    checkpoints: list[tuple] = attrs.Factory(list)
    events: list[tuple] = attrs.Factory(list)
    launches: list[tuple] = attrs.Factory(list)


def load(
    storage: base.StorageDriver,
    size: Size,
    now: dt.datetime,
    *,
    seed: int = 1,
    say: Callable[[str], None] = lambda line: None,
) -> Loaded:
    """Write the data set of ``size`` into ``storage`` (migrated, and holding none
    of its ids yet), its times relative to ``now``; ``say`` hears the progress."""
    draw = random.Random(seed)
    states = [draw.randbytes(STATE_SIZE) for _ in range(64)]
    kinds: list[tuple[str, int, Callable[[int], Iterator[_Batch]]]] = [
        ("finished", size.finished, lambda n: _finished(n, size.finished, now, draw, states)),
        ("sleeping", size.sleeping, lambda n: _sleeping(n, size.sleeping, now, draw, states)),
        ("pending", size.pending, lambda n: _pending(n, size.pending, now, draw)),
    ]
    rows = {"instances": 0, "checkpoints": 0, "instance_events": 0, "instance_launches": 0}
    began = time.perf_counter()
    for kind, count, batches in kinds:
        done = 0
        reported = 0.0
        for batch in batches(count):
            storage.run(lambda tx, batch=batch: _write(tx, batch))
            rows["instances"] += len(batch.instances)
            rows["checkpoints"] += len(batch.checkpoints)
            rows["instance_events"] += len(batch.events)
            rows["instance_launches"] += len(batch.launches)
            done += len(batch.instances)
            if done / count - reported >= 0.1 or done == count:
                reported = done / count
                say(
                    f"  loading {kind} instances: {done:,} of {count:,} "
                    f"({time.perf_counter() - began:.0f} s)"
                )
    return Loaded(size, time.perf_counter() - began, rows)


def _write(tx: base.Transaction, batch: _Batch) -> None:
    if not isinstance(tx, sqlbase.SqlTransaction):
        raise errors.ConfigError("the data scenario loads SQL stores only (sqlite, postgres)")
    for table, columns, rows in (
        ("instances", INSTANCE_COLUMNS, batch.instances),
        ("checkpoints", CHECKPOINT_COLUMNS, batch.checkpoints),
        ("instance_events", EVENT_COLUMNS, batch.events),
        ("instance_launches", LAUNCH_COLUMNS, batch.launches),
    ):
        for start in range(0, len(rows), ROWS_PER_INSERT):
            tx.insert_rows(table, columns, rows[start : start + ROWS_PER_INSERT])


def _numbered(count: int) -> Iterator[range]:
    for start in range(0, count, INSTANCES_PER_TRANSACTION):
        yield range(start, min(count, start + INSTANCES_PER_TRANSACTION))


def tenant_name(number: int) -> str:
    return f"tenant-{number:02d}"


def _tenant(draw: random.Random) -> str:
    # a few large tenants and a long tail
    return tenant_name(min(int(draw.paretovariate(1.2)) - 1, TENANTS - 1))


def _finished(
    count: int, total: int, now: dt.datetime, draw: random.Random, states: list[bytes]
) -> Iterator[_Batch]:
    first = now - HISTORY
    step = (HISTORY - dt.timedelta(days=1)) / total
    for numbers in _numbered(count):
        batch = _Batch()
        for n in numbers:
            instance_id = f"run-{n:08d}"
            created = first + step * n + dt.timedelta(microseconds=draw.randrange(1000))
            started = created + dt.timedelta(milliseconds=draw.randrange(50, 2000))
            took = dt.timedelta(seconds=draw.expovariate(1 / 30))
            finished = started + took
            outcome = draw.random()
            status = "completed" if outcome < 0.85 else "failed" if outcome < 0.95 else "cancelled"
            last = f"step-{CHECKPOINTS_PER_FINISHED - 1}"
            batch.instances.append(
                (
                    instance_id,
                    _tenant(draw),
                    status,
                    last,
                    created,
                    started,
                    finished,
                    finished,
                    None,
                    b'{"ok": true}' if status == "completed" else None,
                    "step-2 raised ValueError" if status == "failed" else None,
                )
            )
            for step_number in range(CHECKPOINTS_PER_FINISHED):
                at = started + took * (step_number + 1) / (CHECKPOINTS_PER_FINISHED + 1)
                batch.checkpoints.append(
                    (instance_id, f"step-{step_number}", draw.choice(states), at)
                )
            end = {"completed": "completed", "failed": "failed", "cancelled": "exited"}[status]
            batch.events += [
                (instance_id, "launched", None, None, created),
                (instance_id, "started", None, None, started),
                (instance_id, "heartbeat", None, None, started + took / 2),
                (instance_id, end, last, b"{}", finished),
            ]
            if n % 2 == 0:
                exit_code = "exit 0" if status == "completed" else "exit 1"
                batch.launches.append((instance_id, SPEC, 3, 1, None, started, exit_code))
        yield batch


def _sleeping(
    count: int, total: int, now: dt.datetime, draw: random.Random, states: list[bytes]
) -> Iterator[_Batch]:
    for numbers in _numbered(count):
        batch = _Batch()
        for n in numbers:
            instance_id = f"sleep-{n:08d}"
            created = now - dt.timedelta(days=7) * (1 - n / total)
            started = created + dt.timedelta(milliseconds=draw.randrange(50, 2000))
            slept = started + dt.timedelta(seconds=draw.randrange(1, 60))
            if draw.random() < DUE_SHARE:
                wake = now - dt.timedelta(seconds=draw.randrange(60, 600))
            else:
                wake = now + SLEEP_HORIZON * draw.random()
            batch.instances.append(
                (
                    instance_id,
                    _tenant(draw),
                    "suspended",
                    "wait",
                    created,
                    started,
                    None,
                    slept,
                    wake,
                    None,
                    None,
                )
            )
            batch.checkpoints += [
                (instance_id, "start", draw.choice(states), started),
                (instance_id, "wait", draw.choice(states), slept),
            ]
            batch.events += [
                (instance_id, "launched", None, None, created),
                (instance_id, "started", None, None, started),
                (instance_id, "suspended", "wait", None, slept),
            ]
            if n % 2 == 0:  # the others sleep for the wake command
                batch.launches.append((instance_id, SPEC, 3, 1, wake, started, "exit 0"))
        yield batch


def _pending(count: int, total: int, now: dt.datetime, draw: random.Random) -> Iterator[_Batch]:
    for numbers in _numbered(count):
        batch = _Batch()
        for n in numbers:
            instance_id = f"queued-{n:08d}"
            created = now - dt.timedelta(hours=1) * (1 - n / total)
            batch.instances.append(
                (instance_id, _tenant(draw), "pending", None, created)
                + (None,) * (len(INSTANCE_COLUMNS) - 5)  # not started yet
            )
            batch.launches.append((instance_id, SPEC, 3, 0, created, None, None))
        yield batch
