"""What the SQL drivers share: the transaction methods and the schema plumbing,
written once over each dialect's named queries (:mod:`runtara.storage.queries`).

A SQL driver provides its connection handling and a small subclass of
:class:`SqlTransaction` (how a statement runs on its connection, how a time is
passed and read back); the SQL itself is in ``sql/queries.sql`` (and
``sql/<dialect>/queries.sql`` for what a dialect writes otherwise).
The connections handed to these functions are DB-API connections with
``execute(sql[, params])`` returning a cursor, as sqlite3's and psycopg's are.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import attrs

from runtara import records
from runtara.records import InstanceCursor
from runtara.storage import base, migrations
from runtara.storage.queries import Queries

INSTANCE_FILTERS = ("tenant_id", "status")
PAGE_FILTERS = (*INSTANCE_FILTERS, "after", "before")
CHECKPOINT_FILTERS = ("checkpoint_id", "created_after", "created_before")
EVENT_FILTERS = ("event_type", "subtype", "created_after", "created_before", "payload_contains")
_POSITIONAL = {"sqlite": "?", "postgresql": "%s"}
"""Each dialect's positional parameter marker (for :meth:`SqlTransaction.insert_rows`)."""


class Cursor(Protocol):
    rowcount: int

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    def execute(self, sql: str, params: Mapping[str, Any] = ..., /) -> Cursor: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...


class SqlTransaction(base.Transaction):
    """The contract's transaction methods over one dialect's named queries.

    Runs on a connection already inside a transaction (or savepoint): the
    driver hands over how a statement runs there (``execute`` returns a cursor
    whose rows are fetched before the next statement), and its subclass says how a time is
    passed and read back. In a write transaction, instances are read with
    ``get_instance_for_update``, which locks the row until the transaction ends.
    """

    _time: Callable[[dt.datetime], Any]
    """A time as a parameter (a staticmethod of the subclass)."""
    _read_time: Callable[[Any], dt.datetime | None]
    """A time column's value as an aware UTC datetime; NULL as None (a staticmethod)."""

    def __init__(
        self,
        queries: Queries,
        execute: Callable[[str, Mapping[str, Any]], Cursor],
        *,
        write: bool,
    ) -> None:
        self._queries = queries
        self._execute = execute
        self._get_instance = queries["get_instance_for_update" if write else "get_instance"]

    # --- helpers ------------------------------------------------------------------

    def _rows(self, name: str, params: Mapping[str, Any]) -> list[Any]:
        return self._execute(self._queries[name], params).fetchall()

    def _one(self, name: str, params: Mapping[str, Any]) -> Any:
        rows = self._rows(name, params)
        return rows[0] if rows else None

    def _changed(self, name: str, params: Mapping[str, Any]) -> int:
        return self._execute(self._queries[name], params).rowcount

    def _param(self, value: object) -> object:
        if isinstance(value, dt.datetime):
            return self._time(value)
        if isinstance(value, (records.InstanceStatus, records.EventType, records.SignalType)):
            return value.value
        return value

    def _filtered(
        self,
        name: str,
        names: tuple[str, ...],
        values: tuple[object, ...],
        params: dict[str, Any],
    ) -> list[Any]:
        """Rows of ``name`` with the filter fragments of the given (non-None) values."""
        keys = []
        for key, value in zip(names, values, strict=True):
            if value is not None:
                keys.append(key)
                params[key] = self._param(value)
        return self._execute(self._queries.compose(name, tuple(keys), " AND "), params).fetchall()

    def _instance(self, row: Any) -> records.Instance:
        return instance_from_row(row, self._read_time)

    def insert_rows(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]]
    ) -> None:
        """Insert ``rows`` (values in ``columns`` order, times as the other methods
        take them) with one multi-row INSERT: bulk loading, such as the bench's
        data set. ``table`` and ``columns`` are names from the schema, never input."""
        if not rows:
            return
        marker = _POSITIONAL[self._queries.dialect]
        row = "(" + ", ".join([marker] * len(columns)) + ")"
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES " + ", ".join([row] * len(rows))
        self._execute(sql, [self._param(value) for values in rows for value in values])

    def create_instance(self, instance_id: str, tenant_id: str, now: dt.datetime) -> bool:
        params = {"instance_id": instance_id, "tenant_id": tenant_id, "now": self._time(now)}
        return self._changed("create_instance", params) == 1

    def get_instance(self, instance_id: str) -> records.Instance | None:
        rows = self._execute(self._get_instance, {"instance_id": instance_id}).fetchall()
        return self._instance(rows[0]) if rows else None

    def update_instance(self, instance_id: str, update: records.InstanceUpdate) -> None:
        changes = update.changes()
        if not changes:
            return
        params = {column: self._param(value) for column, value in changes.items()}
        params["instance_id"] = instance_id
        self._execute(self._queries.compose("update_instance", tuple(changes), ", "), params)

    def list_instances(
        self,
        *,
        tenant_id: str | None = None,
        status: records.InstanceStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[records.Instance]:
        rows = self._filtered(
            "list_instances",
            INSTANCE_FILTERS,
            (tenant_id, status),
            {"limit": limit, "offset": offset},
        )
        return [self._instance(row) for row in rows]

    def count_instances(
        self, *, tenant_id: str | None = None, status: records.InstanceStatus | None = None
    ) -> int:
        return self._filtered("count_instances", INSTANCE_FILTERS, (tenant_id, status), {})[0][0]

    def list_instances_after(
        self,
        *,
        tenant_id: str | None = None,
        status: records.InstanceStatus | None = None,
        limit: int = 100,
        after: InstanceCursor | None = None,
        before: InstanceCursor | None = None,
    ) -> list[records.Instance]:
        params: dict[str, Any] = {"limit": limit}
        chosen = {"tenant_id": tenant_id, "status": status, "after": after, "before": before}
        for key in ("tenant_id", "status"):
            if chosen[key] is not None:
                params[key] = self._param(chosen[key])
        for key in ("after", "before"):
            if chosen[key] is not None:
                params[f"{key}_created_at"] = self._time(chosen[key].created_at)
                params[f"{key}_instance_id"] = chosen[key].instance_id
        keys = tuple(key for key in PAGE_FILTERS if chosen[key] is not None)
        if before is None:
            sql = self._queries.compose("list_instances_after", keys, " AND ")
            return [self._instance(row) for row in self._execute(sql, params).fetchall()]
        sql = self._queries.compose("list_instances_before", keys, " AND ")
        return [self._instance(row) for row in reversed(self._execute(sql, params).fetchall())]

    def count_instances_up_to(
        self,
        at_most: int,
        *,
        tenant_id: str | None = None,
        status: records.InstanceStatus | None = None,
    ) -> int:
        params = {"at_most": at_most}
        return self._filtered(
            "count_instances_up_to", INSTANCE_FILTERS, (tenant_id, status), params
        )[0][0]

    def list_due_sleepers(self, *, due_before: dt.datetime, limit: int) -> list[records.Instance]:
        rows = self._rows(
            "select_due_sleepers", {"due_before": self._time(due_before), "limit": limit}
        )
        return [self._instance(row) for row in rows]

    def list_stale_instances(self, cutoff: dt.datetime, limit: int) -> list[records.Instance]:
        rows = self._rows("list_stale_instances", {"cutoff": self._time(cutoff), "limit": limit})
        return [self._instance(row) for row in rows]

    def list_finished_before(self, cutoff: dt.datetime, limit: int) -> list[str]:
        rows = self._rows("list_finished_before", {"cutoff": self._time(cutoff), "limit": limit})
        return [row[0] for row in rows]

    def delete_instance(self, instance_id: str) -> bool:
        return self._changed("delete_instance", {"instance_id": instance_id}) == 1

    def delete_finished_before(self, cutoff: dt.datetime, limit: int) -> list[str]:
        params = {"cutoff": self._time(cutoff), "limit": limit}
        return [row[0] for row in self._rows("delete_finished_before", params)]

    # --- checkpoints ----------------------------------------------------------

    def insert_checkpoint(
        self, instance_id: str, checkpoint_id: str, state: bytes, now: dt.datetime
    ) -> bool:
        params = {
            "instance_id": instance_id,
            "checkpoint_id": checkpoint_id,
            "state": state,
            "now": self._time(now),
        }
        return self._changed("insert_checkpoint", params) == 1

    def get_checkpoint(self, instance_id: str, checkpoint_id: str) -> records.Checkpoint | None:
        row = self._one(
            "get_checkpoint", {"instance_id": instance_id, "checkpoint_id": checkpoint_id}
        )
        if row is None:
            return None
        return records.Checkpoint(
            instance_id, checkpoint_id, bytes(row[0]), self._read_time(row[1])
        )

    def save_retry_attempt(
        self,
        instance_id: str,
        checkpoint_id: str,
        attempt: int,
        error_message: str | None,
        now: dt.datetime,
    ) -> None:
        self._execute(
            self._queries["save_retry_attempt"],
            {
                "instance_id": instance_id,
                "checkpoint_id": f"{checkpoint_id}::retry::{attempt}",
                "state": (error_message or "").encode("utf-8"),
                "now": self._time(now),
                "attempt": attempt,
                "error_message": error_message,
            },
        )

    def _checkpoint_rows(
        self, name: str, instance_id: str, wanted: records.CheckpointFilter, params: dict
    ) -> list[Any]:
        params["instance_id"] = instance_id
        values = (wanted.checkpoint_id, wanted.created_after, wanted.created_before)
        return self._filtered(name, CHECKPOINT_FILTERS, values, params)

    def list_checkpoints(
        self,
        instance_id: str,
        checkpoint_filter: records.CheckpointFilter = records.ALL_CHECKPOINTS,
        *,
        limit: int = 100,
        offset: int = 0,
    ) -> list[records.CheckpointInfo]:
        rows = self._checkpoint_rows(
            "list_checkpoints",
            instance_id,
            checkpoint_filter,
            {"limit": limit, "offset": offset},
        )
        return [
            records.CheckpointInfo(instance_id, row[0], row[1], self._read_time(row[2]))
            for row in rows
        ]

    def count_checkpoints(
        self,
        instance_id: str,
        checkpoint_filter: records.CheckpointFilter = records.ALL_CHECKPOINTS,
    ) -> int:
        return self._checkpoint_rows("count_checkpoints", instance_id, checkpoint_filter, {})[0][0]

    # --- events ---------------------------------------------------------------

    def insert_event(self, event: records.Event) -> int:
        row = self._one(
            "insert_event",
            {
                "instance_id": event.instance_id,
                "event_type": event.event_type.value,
                "checkpoint_id": event.checkpoint_id,
                "payload": event.payload,
                "created_at": self._time(event.created_at),
                "subtype": event.subtype,
            },
        )
        return row[0]

    def _event_rows(
        self, name: str, instance_id: str, wanted: records.EventFilter, params: dict
    ) -> list[Any]:
        params["instance_id"] = instance_id
        values = (
            wanted.event_type,
            wanted.subtype,
            wanted.created_after,
            wanted.created_before,
            wanted.payload_contains,
        )
        return self._filtered(name, EVENT_FILTERS, values, params)

    def list_events(
        self,
        instance_id: str,
        event_filter: records.EventFilter = records.ALL_EVENTS,
        *,
        limit: int = 100,
        offset: int = 0,
    ) -> list[records.Event]:
        rows = self._event_rows(
            "list_events", instance_id, event_filter, {"limit": limit, "offset": offset}
        )
        return [
            records.Event(
                id=row[0],
                instance_id=row[1],
                event_type=records.EventType(row[2]),
                checkpoint_id=row[3],
                payload=None if row[4] is None else bytes(row[4]),
                created_at=self._read_time(row[5]),
                subtype=row[6],
            )
            for row in rows
        ]

    def count_events(
        self, instance_id: str, event_filter: records.EventFilter = records.ALL_EVENTS
    ) -> int:
        return self._event_rows("count_events", instance_id, event_filter, {})[0][0]

    # --- signals --------------------------------------------------------------

    def put_signal(
        self,
        instance_id: str,
        signal_type: records.SignalType,
        payload: bytes,
        now: dt.datetime,
    ) -> None:
        self._execute(
            self._queries["put_signal"],
            {
                "instance_id": instance_id,
                "signal_type": signal_type.value,
                "payload": payload,
                "now": self._time(now),
            },
        )

    def get_pending_signal(self, instance_id: str) -> records.Signal | None:
        row = self._one("get_pending_signal", {"instance_id": instance_id})
        if row is None:
            return None
        return records.Signal(
            instance_id=instance_id,
            signal_type=records.SignalType(row[0]),
            payload=bytes(row[1] or b""),
            created_at=self._read_time(row[2]),
        )

    def acknowledge_signal(
        self, instance_id: str, signal_type: records.SignalType, now: dt.datetime
    ) -> bool:
        params = {
            "instance_id": instance_id,
            "signal_type": signal_type.value,
            "now": self._time(now),
        }
        return self._changed("acknowledge_signal", params) == 1

    def put_custom_signal(
        self, instance_id: str, checkpoint_id: str, payload: bytes, now: dt.datetime
    ) -> None:
        self._execute(
            self._queries["put_custom_signal"],
            {
                "instance_id": instance_id,
                "checkpoint_id": checkpoint_id,
                "payload": payload,
                "now": self._time(now),
            },
        )

    def take_custom_signal(
        self, instance_id: str, checkpoint_id: str
    ) -> records.CustomSignal | None:
        row = self._one(
            "take_custom_signal", {"instance_id": instance_id, "checkpoint_id": checkpoint_id}
        )
        if row is None:
            return None
        return records.CustomSignal(
            instance_id, checkpoint_id, bytes(row[0] or b""), self._read_time(row[1])
        )

    def list_custom_signals(self, instance_id: str) -> list[records.CustomSignal]:
        rows = self._rows("list_custom_signals", {"instance_id": instance_id})
        return [
            records.CustomSignal(instance_id, row[0], bytes(row[1] or b""), self._read_time(row[2]))
            for row in rows
        ]

    # --- launches ---------------------------------------------------------------

    def _launch(self, row: Any) -> records.Launch:
        """Columns: id, spec, input, max_failures, attempt, failures, resumed_from,
        launched_at, next_launch_at, claimed_by, claimed_until, pid, pid_started, host,
        registration, stop_deadline, last_exit, queue, concurrency_key, priority,
        origin_instance, origin_checkpoint, parent_instance, on_parent_cancel."""
        time = self._read_time
        return records.Launch(
            instance_id=row[0],
            spec=row[1],
            input=None if row[2] is None else bytes(row[2]),
            max_failures=row[3],
            attempt=row[4],
            failures=row[5],
            resumed_from=row[6],
            launched_at=time(row[7]),
            next_launch_at=time(row[8]),
            claimed_by=row[9],
            claimed_until=time(row[10]),
            pid=row[11],
            pid_started=row[12],
            host=row[13],
            registration=row[14],
            stop_deadline=time(row[15]),
            last_exit=row[16],
            queue=row[17],
            key=row[18],
            priority=row[19],
            origin_instance=row[20],
            origin_checkpoint=row[21],
            parent_instance=row[22],
            on_parent_cancel=row[23],
        )

    def insert_launch(self, launch: records.Launch) -> None:
        self._execute(
            self._queries["insert_launch"],
            {
                "instance_id": launch.instance_id,
                "spec": launch.spec,
                "input": launch.input,
                "max_failures": launch.max_failures,
                "attempt": launch.attempt,
                "next_launch_at": self._param(launch.next_launch_at),
                "queue": launch.queue,
                "concurrency_key": launch.key,
                "priority": launch.priority,
                "origin_instance": launch.origin_instance,
                "origin_checkpoint": launch.origin_checkpoint,
                "parent_instance": launch.parent_instance,
                "on_parent_cancel": launch.on_parent_cancel,
            },
        )

    def get_launch(self, instance_id: str) -> records.Launch | None:
        row = self._one("get_launch", {"instance_id": instance_id})
        return None if row is None else self._launch(row)

    def update_launch(
        self,
        instance_id: str,
        update: records.LaunchUpdate,
        *,
        held_by: records.LaunchHolder | None = None,
    ) -> bool:
        changes = update.changes()
        if not changes:
            return False
        params = {column: self._param(value) for column, value in changes.items()}
        params["instance_id"] = instance_id
        name = "update_launch"
        if held_by is not None:
            name = "update_launch_held"
            params["held_by"] = held_by.claimed_by
            params["held_attempt"] = held_by.attempt
        return (
            self._execute(self._queries.compose(name, tuple(changes), ", "), params).rowcount == 1
        )

    def list_due_launches(self, *, now: dt.datetime, limit: int) -> list[str]:
        return [
            row[0]
            for row in self._rows("select_due_launches", {"now": self._time(now), "limit": limit})
        ]

    def list_lapsed_launches(
        self, *, now: dt.datetime, due_before: dt.datetime, limit: int
    ) -> list[records.Launch]:
        params = {"now": self._time(now), "due_before": self._time(due_before), "limit": limit}
        return [self._launch(row) for row in self._rows("list_lapsed_launches", params)]

    def list_claimed_launches(self, *, claimed_by: str, limit: int) -> list[records.Launch]:
        params = {"claimed_by": claimed_by, "limit": limit}
        return [self._launch(row) for row in self._rows("list_claimed_launches", params)]

    def list_children(self, parent_instance: str) -> list[records.Launch]:
        rows = self._rows("list_children", {"parent_instance": parent_instance})
        return [self._launch(row) for row in rows]

    # --- queues -------------------------------------------------------------------

    @staticmethod
    def _queue(row: Any) -> records.Queue:
        return records.Queue(row[0], row[1], row[2], row[3], row[4], bool(row[5]))

    def get_queue(self, name: str, *, lock: bool = False) -> records.Queue | None:
        row = self._one("get_queue_for_update" if lock else "get_queue", {"name": name})
        return None if row is None else self._queue(row)

    def list_queues(self) -> list[records.Queue]:
        return [self._queue(row) for row in self._rows("list_queues", {})]

    def lock_queues(self) -> None:
        self._rows("lock_queues", {})

    def put_queue(self, queue: records.Queue) -> None:
        self._execute(self._queries["put_queue"], attrs.asdict(queue))

    def count_claimed(self, queue: str, key: str | None = None) -> int:
        if key is None:
            return self._one("count_queue_claimed", {"queue": queue})[0]
        return self._one("count_key_claimed", {"queue": queue, "concurrency_key": key})[0]

    def record_queue_start(self, queue: str, now: dt.datetime, expires_at: dt.datetime) -> None:
        self._execute(
            self._queries["delete_expired_queue_starts"], {"queue": queue, "now": self._time(now)}
        )
        params = {"queue": queue, "expires_at": self._time(expires_at)}
        self._execute(self._queries["insert_queue_start"], params)

    def count_queue_starts(self, queue: str, now: dt.datetime) -> int:
        return self._one("count_queue_starts", {"queue": queue, "now": self._time(now)})[0]

    def queue_figures(self, now: dt.datetime) -> dict[str, records.QueueFigures]:
        return {
            row[0]: records.QueueFigures(int(row[1]), int(row[2]), int(row[3]))
            for row in self._rows("queue_figures", {"now": self._time(now)})
        }

    # --- schedules ----------------------------------------------------------------

    def _schedule(self, row: Any) -> records.Schedule:
        time = self._read_time
        return records.Schedule(
            name=row[0],
            cron=row[1],
            every=row[2],
            timezone=row[3],
            overlap=row[4],
            catch_up=row[5],
            tenant_id=row[6],
            spec=row[7],
            input=None if row[8] is None else bytes(row[8]),
            created_at=time(row[9]),
            next_tick_at=time(row[10]),
            paused=bool(row[11]),
            last_tick_at=time(row[12]),
            last_instance_id=row[13],
            ticks=row[14],
            skipped=row[15],
        )

    def get_schedule(self, name: str, *, lock: bool = False) -> records.Schedule | None:
        row = self._one("get_schedule_for_update" if lock else "get_schedule", {"name": name})
        return None if row is None else self._schedule(row)

    def list_schedules(self) -> list[records.Schedule]:
        return [self._schedule(row) for row in self._rows("list_schedules", {})]

    def list_due_schedules(self, *, now: dt.datetime, limit: int) -> list[str]:
        params = {"now": self._time(now), "limit": limit}
        return [row[0] for row in self._rows("select_due_schedules", params)]

    def put_schedule(self, schedule: records.Schedule) -> None:
        params = {name: self._param(value) for name, value in attrs.asdict(schedule).items()}
        self._execute(self._queries["put_schedule"], params)

    def delete_schedule(self, name: str) -> bool:
        return self._changed("delete_schedule", {"name": name}) == 1


# --- the schema ----------------------------------------------------------------


def migrate(
    connection: Connection, queries: Queries, run_script: Callable[[str], None]
) -> list[str]:
    """Apply the dialect's pending migrations in one transaction that holds the
    schema lock, record each in ``runtara_migrations``, and return their names.

    The transaction ends with a write probe, so a store that cannot be written
    fails here even when there is nothing to apply. On any failure nothing is
    kept and the exception passes through (the driver maps library errors).
    """
    with _schema_transaction(connection, queries):
        connection.execute(queries["create_migrations_table"])
        applied = {
            row[0]: migrations.AppliedMigration(row[0], row[1], row[2])
            for row in connection.execute(queries["applied_migrations"]).fetchall()
        }
        todo = migrations.pending(migrations.load(queries.dialect), applied)
        for migration in todo:
            run_script(migration.sql)
            connection.execute(
                queries["record_migration"],
                {
                    "version": migration.version,
                    "name": migration.name,
                    "checksum": migration.checksum,
                },
            )
        connection.execute(queries["probe_write"]).fetchall()
        connection.commit()
    return [migration.name for migration in todo]


def probe_write(connection: Connection, queries: Queries) -> None:
    """Take the schema lock and make a write that is rolled back: raises the
    library's error unless the store is migrated and accepts writes."""
    with _schema_transaction(connection, queries):
        connection.execute(queries["probe_write"]).fetchall()


def has_schema(connection: Connection, queries: Queries) -> bool:
    """Whether the store has the migrations ledger (was migrated at least once)."""
    return bool(connection.execute(queries["migrations_table_exists"]).fetchall()[0][0])


@contextlib.contextmanager
def _schema_transaction(connection: Connection, queries: Queries) -> Iterator[None]:
    connection.execute(queries["lock_schema"])
    try:
        yield
    finally:
        # After a commit this does nothing; after a failure it drops whatever
        # the transaction did (a broken connection cannot, and need not).
        with contextlib.suppress(Exception):
            connection.rollback()


def instance_from_row(row: Any, read_time: Callable[[Any], dt.datetime | None]) -> records.Instance:
    """An instance from the columns of the named query ``get_instance``: id, tenant,
    status, created, checkpoint, started, finished, output, error, sleep_until,
    last_activity, wake_claimed_until, registration; ``read_time`` reads the
    dialect's stored times."""
    return records.Instance(
        instance_id=row[0],
        tenant_id=row[1],
        status=records.InstanceStatus(row[2]),
        created_at=read_time(row[3]),
        checkpoint_id=row[4],
        started_at=read_time(row[5]),
        finished_at=read_time(row[6]),
        output=None if row[7] is None else bytes(row[7]),
        error=row[8],
        sleep_until=read_time(row[9]),
        last_activity_at=read_time(row[10]),
        wake_claimed_until=read_time(row[11]),
        registration=row[12],
    )
