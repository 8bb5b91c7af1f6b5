"""The storage contract's transaction methods in PostgreSQL's SQL."""

from __future__ import annotations

import datetime as dt

import psycopg

from runtara import records
from runtara.storage import base, sql

_INSTANCE_COLUMNS = (
    "instance_id, tenant_id, status::text, created_at, checkpoint_id, started_at, finished_at, "
    "output, error, sleep_until, last_activity_at, wake_claimed_until"
)


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else value.astimezone(dt.timezone.utc)


DIALECT = sql.Dialect(
    mark="%s",
    time_param=lambda value: value,
    payload_contains="strpos(lower(runtara_payload_text(payload)), lower(%s)) > 0",
    status_cast="::instance_status",
    event_type_cast="::instance_event_type",
)


def _instance(row: tuple) -> records.Instance:
    return sql.instance_from_row(row, _utc)


class PostgresTransaction(base.Transaction):
    """Runs on a connection inside ``conn.transaction()``."""

    def __init__(self, connection: psycopg.Connection, *, write: bool) -> None:
        self._db = connection
        self._write = write

    def _rows(self, query: str, params: tuple | list = ()) -> list[tuple]:
        # Binary results: bytea arrives as bytes, not as hex text twice its size.
        return self._db.execute(query, params, binary=True).fetchall()

    def _one(self, query: str, params: tuple | list = ()) -> tuple | None:
        rows = self._rows(query, params)
        return rows[0] if rows else None

    def _count(self, query: str, params: tuple | list = ()) -> int:
        return self._one(query, params)[0]

    # --- instances ------------------------------------------------------------

    def create_instance(self, instance_id: str, tenant_id: str, now: dt.datetime) -> bool:
        cursor = self._db.execute(
            "INSERT INTO instances (instance_id, tenant_id, status, created_at) "
            "VALUES (%s, %s, 'pending', %s) ON CONFLICT (instance_id) DO NOTHING",
            (instance_id, tenant_id, now),
        )
        return cursor.rowcount == 1

    def get_instance(self, instance_id: str) -> records.Instance | None:
        lock = " FOR UPDATE" if self._write else ""
        row = self._one(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE instance_id = %s{lock}",
            (instance_id,),
        )
        return None if row is None else _instance(row)

    def update_instance(self, instance_id: str, update: records.InstanceUpdate) -> None:
        changes = update.changes()
        if changes:
            self._db.execute(
                sql.update_statement(DIALECT, tuple(changes)),
                (*(DIALECT.param(value) for value in changes.values()), instance_id),
            )

    def list_instances(
        self,
        *,
        tenant_id: str | None = None,
        status: records.InstanceStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[records.Instance]:
        where, params = sql.instance_conditions(DIALECT, tenant_id, status)
        rows = self._rows(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances{where} "
            "ORDER BY created_at DESC, instance_id LIMIT %s OFFSET %s",
            (*params, limit, offset),
        )
        return [_instance(row) for row in rows]

    def count_instances(
        self, *, tenant_id: str | None = None, status: records.InstanceStatus | None = None
    ) -> int:
        where, params = sql.instance_conditions(DIALECT, tenant_id, status)
        return self._count(f"SELECT count(*) FROM instances{where}", params)

    def claim_due_sleepers(
        self, *, due_before: dt.datetime, now: dt.datetime, claim_until: dt.datetime, limit: int
    ) -> list[records.Instance]:
        # SKIP LOCKED: a scheduler in another process passes over the rows this
        # one is claiming instead of claiming them too.
        rows = self._rows(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE status = 'suspended' "
            "AND sleep_until IS NOT NULL AND sleep_until <= %s "
            "AND (wake_claimed_until IS NULL OR wake_claimed_until <= %s) "
            "ORDER BY sleep_until, instance_id LIMIT %s FOR UPDATE SKIP LOCKED",
            (due_before, now, limit),
        )
        claimed = [_instance(row) for row in rows]
        if claimed:
            self._db.execute(
                "UPDATE instances SET wake_claimed_until = %s WHERE instance_id = ANY(%s)",
                (claim_until, [instance.instance_id for instance in claimed]),
            )
        return claimed

    def list_stale_instances(self, cutoff: dt.datetime, limit: int) -> list[records.Instance]:
        rows = self._rows(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE status = 'running' "
            "AND coalesce(last_activity_at, started_at, created_at) < %s "
            "ORDER BY coalesce(last_activity_at, started_at, created_at), instance_id LIMIT %s",
            (cutoff, limit),
        )
        return [_instance(row) for row in rows]

    def list_finished_before(self, cutoff: dt.datetime, limit: int) -> list[str]:
        rows = self._rows(
            "SELECT instance_id FROM instances "
            "WHERE status IN ('completed', 'failed', 'cancelled') AND finished_at < %s "
            "ORDER BY finished_at, instance_id LIMIT %s",
            (cutoff, limit),
        )
        return [row[0] for row in rows]

    def delete_instance(self, instance_id: str) -> bool:
        # Foreign keys cascade to checkpoints, events and signals.
        cursor = self._db.execute("DELETE FROM instances WHERE instance_id = %s", (instance_id,))
        return cursor.rowcount == 1

    # --- checkpoints ----------------------------------------------------------

    def insert_checkpoint(
        self, instance_id: str, checkpoint_id: str, state: bytes, now: dt.datetime
    ) -> bool:
        cursor = self._db.execute(
            "INSERT INTO checkpoints (instance_id, checkpoint_id, state, created_at) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (instance_id, checkpoint_id) DO NOTHING",
            (instance_id, checkpoint_id, state, now),
        )
        return cursor.rowcount == 1

    def get_checkpoint(self, instance_id: str, checkpoint_id: str) -> records.Checkpoint | None:
        row = self._one(
            "SELECT state, created_at FROM checkpoints "
            "WHERE instance_id = %s AND checkpoint_id = %s",
            (instance_id, checkpoint_id),
        )
        if row is None:
            return None
        return records.Checkpoint(instance_id, checkpoint_id, bytes(row[0]), _utc(row[1]))

    def save_retry_attempt(
        self,
        instance_id: str,
        checkpoint_id: str,
        attempt: int,
        error_message: str | None,
        now: dt.datetime,
    ) -> None:
        self._db.execute(
            "INSERT INTO checkpoints (instance_id, checkpoint_id, state, created_at, "
            "is_retry_attempt, attempt_number, error_message) "
            "VALUES (%s, %s, %s, %s, true, %s, %s) "
            "ON CONFLICT (instance_id, checkpoint_id) DO UPDATE SET state = excluded.state, "
            "created_at = excluded.created_at, attempt_number = excluded.attempt_number, "
            "error_message = excluded.error_message",
            (
                instance_id,
                f"{checkpoint_id}::retry::{attempt}",
                (error_message or "").encode("utf-8"),
                now,
                attempt,
                error_message,
            ),
        )

    def list_checkpoints(
        self,
        instance_id: str,
        checkpoint_filter: records.CheckpointFilter = records.ALL_CHECKPOINTS,
        *,
        limit: int = 100,
        offset: int = 0,
    ) -> list[records.CheckpointInfo]:
        where, params = sql.checkpoint_conditions(DIALECT, instance_id, checkpoint_filter)
        rows = self._rows(
            f"SELECT checkpoint_id, length(state), created_at FROM checkpoints{where} "
            "ORDER BY created_at DESC, id DESC LIMIT %s OFFSET %s",
            (*params, limit, offset),
        )
        return [records.CheckpointInfo(instance_id, row[0], row[1], _utc(row[2])) for row in rows]

    def count_checkpoints(
        self,
        instance_id: str,
        checkpoint_filter: records.CheckpointFilter = records.ALL_CHECKPOINTS,
    ) -> int:
        where, params = sql.checkpoint_conditions(DIALECT, instance_id, checkpoint_filter)
        return self._count(f"SELECT count(*) FROM checkpoints{where}", params)

    # --- events ---------------------------------------------------------------

    def insert_event(self, event: records.Event) -> int:
        return self._one(
            "INSERT INTO instance_events "
            "(instance_id, event_type, checkpoint_id, payload, created_at, subtype) "
            "VALUES (%s, %s::instance_event_type, %s, %s, %s, %s) RETURNING id",
            (
                event.instance_id,
                event.event_type.value,
                event.checkpoint_id,
                event.payload,
                event.created_at,
                event.subtype,
            ),
        )[0]

    def list_events(
        self,
        instance_id: str,
        event_filter: records.EventFilter = records.ALL_EVENTS,
        *,
        limit: int = 100,
        offset: int = 0,
    ) -> list[records.Event]:
        where, params = sql.event_conditions(DIALECT, instance_id, event_filter)
        rows = self._rows(
            "SELECT id, instance_id, event_type::text, checkpoint_id, payload, created_at, subtype "
            f"FROM instance_events{where} ORDER BY created_at DESC, id DESC LIMIT %s OFFSET %s",
            (*params, limit, offset),
        )
        return [sql.event_from_row(row, _utc) for row in rows]

    def count_events(
        self, instance_id: str, event_filter: records.EventFilter = records.ALL_EVENTS
    ) -> int:
        where, params = sql.event_conditions(DIALECT, instance_id, event_filter)
        return self._count(f"SELECT count(*) FROM instance_events{where}", params)

    # --- signals --------------------------------------------------------------

    def put_signal(
        self,
        instance_id: str,
        signal_type: records.SignalType,
        payload: bytes,
        now: dt.datetime,
    ) -> None:
        self._db.execute(
            "INSERT INTO pending_signals (instance_id, signal_type, payload, created_at) "
            "VALUES (%s, %s::signal_type, %s, %s) ON CONFLICT (instance_id) DO UPDATE SET "
            "signal_type = excluded.signal_type, payload = excluded.payload, "
            "created_at = excluded.created_at, acknowledged_at = NULL",
            (instance_id, signal_type.value, payload, now),
        )

    def get_pending_signal(self, instance_id: str) -> records.Signal | None:
        row = self._one(
            "SELECT signal_type::text, payload, created_at FROM pending_signals "
            "WHERE instance_id = %s AND acknowledged_at IS NULL",
            (instance_id,),
        )
        if row is None:
            return None
        return records.Signal(
            instance_id=instance_id,
            signal_type=records.SignalType(row[0]),
            payload=bytes(row[1] or b""),
            created_at=_utc(row[2]),
        )

    def acknowledge_signal(
        self, instance_id: str, signal_type: records.SignalType, now: dt.datetime
    ) -> bool:
        cursor = self._db.execute(
            "UPDATE pending_signals SET acknowledged_at = %s WHERE instance_id = %s "
            "AND signal_type = %s::signal_type AND acknowledged_at IS NULL",
            (now, instance_id, signal_type.value),
        )
        return cursor.rowcount == 1

    def put_custom_signal(
        self, instance_id: str, checkpoint_id: str, payload: bytes, now: dt.datetime
    ) -> None:
        self._db.execute(
            "INSERT INTO pending_checkpoint_signals (instance_id, checkpoint_id, payload, created_at) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (instance_id, checkpoint_id) DO UPDATE SET "
            "payload = excluded.payload, created_at = excluded.created_at",
            (instance_id, checkpoint_id, payload, now),
        )

    def take_custom_signal(
        self, instance_id: str, checkpoint_id: str
    ) -> records.CustomSignal | None:
        row = self._one(
            "DELETE FROM pending_checkpoint_signals WHERE instance_id = %s AND checkpoint_id = %s "
            "RETURNING payload, created_at",
            (instance_id, checkpoint_id),
        )
        if row is None:
            return None
        return records.CustomSignal(instance_id, checkpoint_id, bytes(row[0] or b""), _utc(row[1]))

    def list_custom_signals(self, instance_id: str) -> list[records.CustomSignal]:
        rows = self._rows(
            "SELECT checkpoint_id, payload, created_at FROM pending_checkpoint_signals "
            "WHERE instance_id = %s ORDER BY created_at, checkpoint_id",
            (instance_id,),
        )
        return [
            records.CustomSignal(instance_id, row[0], bytes(row[1] or b""), _utc(row[2]))
            for row in rows
        ]
