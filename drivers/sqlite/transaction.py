"""The storage contract's transaction methods in SQLite's SQL."""

from __future__ import annotations

import datetime as dt
import sqlite3

from runtara import records
from runtara.storage import base, sql

_INSTANCE_COLUMNS = (
    "instance_id, tenant_id, status, created_at, checkpoint_id, started_at, finished_at, "
    "output, error, sleep_until, last_activity_at, wake_claimed_until"
)


def to_text(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.utcoffset():
        value = value.astimezone(dt.timezone.utc)
    # isoformat is much cheaper than strftime; its first 26 characters are
    # exactly YYYY-MM-DD HH:MM:SS.ffffff.
    return value.isoformat(sep=" ", timespec="microseconds")[:26]


def from_text(value: str | None) -> dt.datetime | None:
    """Read our format and the two upstream ones (``YYYY-MM-DD HH:MM:SS``, RFC 3339)."""
    if value is None:
        return None
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc)


DIALECT = sql.Dialect(
    mark="?",
    time_param=to_text,
    # instr on lower() is an exact, case-insensitive substring test with no
    # LIKE wildcards to escape.
    payload_contains="instr(lower(CAST(payload AS TEXT)), lower(?)) > 0",
)


def _instance(row: tuple) -> records.Instance:
    return sql.instance_from_row(row, from_text)


class SqliteTransaction(base.Transaction):
    """Runs on a connection already inside a transaction (or savepoint)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    # --- instances ------------------------------------------------------------

    def create_instance(self, instance_id: str, tenant_id: str, now: dt.datetime) -> bool:
        cursor = self._db.execute(
            "INSERT INTO instances (instance_id, tenant_id, status, created_at) "
            "VALUES (?, ?, 'pending', ?) ON CONFLICT (instance_id) DO NOTHING",
            (instance_id, tenant_id, to_text(now)),
        )
        return cursor.rowcount == 1

    def get_instance(self, instance_id: str) -> records.Instance | None:
        row = self._db.execute(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE instance_id = ?", (instance_id,)
        ).fetchone()
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
        rows = self._db.execute(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances{where} "
            "ORDER BY created_at DESC, instance_id LIMIT ? OFFSET ?",
            (*params, limit, offset),
        ).fetchall()
        return [_instance(row) for row in rows]

    def count_instances(
        self, *, tenant_id: str | None = None, status: records.InstanceStatus | None = None
    ) -> int:
        where, params = sql.instance_conditions(DIALECT, tenant_id, status)
        return self._db.execute(f"SELECT count(*) FROM instances{where}", params).fetchone()[0]

    def claim_due_sleepers(
        self, *, due_before: dt.datetime, now: dt.datetime, claim_until: dt.datetime, limit: int
    ) -> list[records.Instance]:
        # The write transaction holds SQLite's only write lock: no one else can
        # claim between this read and the update.
        rows = self._db.execute(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE status = 'suspended' "
            "AND sleep_until IS NOT NULL AND sleep_until <= ? "
            "AND (wake_claimed_until IS NULL OR wake_claimed_until <= ?) "
            "ORDER BY sleep_until, instance_id LIMIT ?",
            (to_text(due_before), to_text(now), limit),
        ).fetchall()
        claimed = [_instance(row) for row in rows]
        self._db.executemany(
            "UPDATE instances SET wake_claimed_until = ? WHERE instance_id = ?",
            [(to_text(claim_until), instance.instance_id) for instance in claimed],
        )
        return claimed

    def list_stale_instances(self, cutoff: dt.datetime, limit: int) -> list[records.Instance]:
        rows = self._db.execute(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE status = 'running' "
            "AND coalesce(last_activity_at, started_at, created_at) < ? "
            "ORDER BY coalesce(last_activity_at, started_at, created_at), instance_id LIMIT ?",
            (to_text(cutoff), limit),
        ).fetchall()
        return [_instance(row) for row in rows]

    def list_finished_before(self, cutoff: dt.datetime, limit: int) -> list[str]:
        rows = self._db.execute(
            "SELECT instance_id FROM instances "
            "WHERE status IN ('completed', 'failed', 'cancelled') AND finished_at < ? "
            "ORDER BY finished_at, instance_id LIMIT ?",
            (to_text(cutoff), limit),
        ).fetchall()
        return [row[0] for row in rows]

    def delete_instance(self, instance_id: str) -> bool:
        # Foreign keys cascade to checkpoints, events and signals.
        cursor = self._db.execute("DELETE FROM instances WHERE instance_id = ?", (instance_id,))
        return cursor.rowcount == 1

    # --- checkpoints ----------------------------------------------------------

    def insert_checkpoint(
        self, instance_id: str, checkpoint_id: str, state: bytes, now: dt.datetime
    ) -> bool:
        cursor = self._db.execute(
            "INSERT INTO checkpoints (instance_id, checkpoint_id, state, created_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (instance_id, checkpoint_id) DO NOTHING",
            (instance_id, checkpoint_id, state, to_text(now)),
        )
        return cursor.rowcount == 1

    def get_checkpoint(self, instance_id: str, checkpoint_id: str) -> records.Checkpoint | None:
        row = self._db.execute(
            "SELECT state, created_at FROM checkpoints WHERE instance_id = ? AND checkpoint_id = ?",
            (instance_id, checkpoint_id),
        ).fetchone()
        if row is None:
            return None
        return records.Checkpoint(instance_id, checkpoint_id, bytes(row[0]), from_text(row[1]))

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
            "is_retry_attempt, attempt_number, error_message) VALUES (?, ?, ?, ?, 1, ?, ?) "
            "ON CONFLICT (instance_id, checkpoint_id) DO UPDATE SET state = excluded.state, "
            "created_at = excluded.created_at, error_message = excluded.error_message",
            (
                instance_id,
                f"{checkpoint_id}::retry::{attempt}",
                (error_message or "").encode("utf-8"),
                to_text(now),
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
        rows = self._db.execute(
            f"SELECT checkpoint_id, length(state), created_at FROM checkpoints{where} "
            "ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
            (*params, limit, offset),
        ).fetchall()
        return [
            records.CheckpointInfo(instance_id, row[0], row[1], from_text(row[2])) for row in rows
        ]

    def count_checkpoints(
        self,
        instance_id: str,
        checkpoint_filter: records.CheckpointFilter = records.ALL_CHECKPOINTS,
    ) -> int:
        where, params = sql.checkpoint_conditions(DIALECT, instance_id, checkpoint_filter)
        return self._db.execute(f"SELECT count(*) FROM checkpoints{where}", params).fetchone()[0]

    # --- events ---------------------------------------------------------------

    def insert_event(self, event: records.Event) -> int:
        cursor = self._db.execute(
            "INSERT INTO instance_events "
            "(instance_id, event_type, checkpoint_id, payload, created_at, subtype) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                event.instance_id,
                event.event_type.value,
                event.checkpoint_id,
                event.payload,
                to_text(event.created_at),
                event.subtype,
            ),
        )
        return cursor.lastrowid

    def list_events(
        self,
        instance_id: str,
        event_filter: records.EventFilter = records.ALL_EVENTS,
        *,
        limit: int = 100,
        offset: int = 0,
    ) -> list[records.Event]:
        where, params = sql.event_conditions(DIALECT, instance_id, event_filter)
        rows = self._db.execute(
            "SELECT id, instance_id, event_type, checkpoint_id, payload, created_at, subtype "
            f"FROM instance_events{where} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
            (*params, limit, offset),
        ).fetchall()
        return [sql.event_from_row(row, from_text) for row in rows]

    def count_events(
        self, instance_id: str, event_filter: records.EventFilter = records.ALL_EVENTS
    ) -> int:
        where, params = sql.event_conditions(DIALECT, instance_id, event_filter)
        return self._db.execute(f"SELECT count(*) FROM instance_events{where}", params).fetchone()[
            0
        ]

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
            "VALUES (?, ?, ?, ?) ON CONFLICT (instance_id) DO UPDATE SET signal_type = excluded.signal_type, "
            "payload = excluded.payload, created_at = excluded.created_at, acknowledged_at = NULL",
            (instance_id, signal_type.value, payload, to_text(now)),
        )

    def get_pending_signal(self, instance_id: str) -> records.Signal | None:
        row = self._db.execute(
            "SELECT signal_type, payload, created_at FROM pending_signals "
            "WHERE instance_id = ? AND acknowledged_at IS NULL",
            (instance_id,),
        ).fetchone()
        if row is None:
            return None
        return records.Signal(
            instance_id=instance_id,
            signal_type=records.SignalType(row[0]),
            payload=bytes(row[1] or b""),
            created_at=from_text(row[2]),
        )

    def acknowledge_signal(
        self, instance_id: str, signal_type: records.SignalType, now: dt.datetime
    ) -> bool:
        cursor = self._db.execute(
            "UPDATE pending_signals SET acknowledged_at = ? "
            "WHERE instance_id = ? AND signal_type = ? AND acknowledged_at IS NULL",
            (to_text(now), instance_id, signal_type.value),
        )
        return cursor.rowcount == 1

    def put_custom_signal(
        self, instance_id: str, checkpoint_id: str, payload: bytes, now: dt.datetime
    ) -> None:
        self._db.execute(
            "INSERT INTO pending_custom_signals (instance_id, checkpoint_id, payload, created_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (instance_id, checkpoint_id) DO UPDATE SET payload = excluded.payload, "
            "created_at = excluded.created_at",
            (instance_id, checkpoint_id, payload, to_text(now)),
        )

    def take_custom_signal(
        self, instance_id: str, checkpoint_id: str
    ) -> records.CustomSignal | None:
        # fetchall: a RETURNING statement left unfinished would block the COMMIT.
        rows = self._db.execute(
            "DELETE FROM pending_custom_signals WHERE instance_id = ? AND checkpoint_id = ? "
            "RETURNING payload, created_at",
            (instance_id, checkpoint_id),
        ).fetchall()
        if not rows:
            return None
        row = rows[0]
        return records.CustomSignal(
            instance_id, checkpoint_id, bytes(row[0] or b""), from_text(row[1])
        )

    def list_custom_signals(self, instance_id: str) -> list[records.CustomSignal]:
        rows = self._db.execute(
            "SELECT checkpoint_id, payload, created_at FROM pending_custom_signals "
            "WHERE instance_id = ? ORDER BY created_at, checkpoint_id",
            (instance_id,),
        ).fetchall()
        return [
            records.CustomSignal(instance_id, row[0], bytes(row[1] or b""), from_text(row[2]))
            for row in rows
        ]
