"""What the SQL drivers share: the shape of filters, updates and rows.

The built-in drivers (and third-party SQL ones) differ only in placeholders,
casts and how times are stored; a :class:`Dialect` names those differences and
the functions here build the rest the same way for every driver.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import Any

import attrs

from runtara import records

UPDATABLE = (
    "status",
    "checkpoint_id",
    "started_at",
    "finished_at",
    "output",
    "error",
    "sleep_until",
    "last_activity_at",
    "wake_claimed_until",
)


@attrs.frozen
class Dialect:
    mark: str
    """The parameter placeholder: ``?`` or ``%s``."""
    time_param: Callable[[dt.datetime], Any]
    """How a time is passed as a parameter."""
    payload_contains: str
    """SQL testing that ``payload`` contains the parameter, case-insensitively."""
    status_cast: str = ""
    """Appended to a status placeholder (``::instance_status``)."""
    event_type_cast: str = ""

    def param(self, value: object) -> object:
        if isinstance(value, dt.datetime):
            return self.time_param(value)
        if isinstance(value, records.InstanceStatus):
            return value.value
        return value


def where(conditions: list[str]) -> str:
    return (" WHERE " + " AND ".join(conditions)) if conditions else ""


@functools.lru_cache(maxsize=128)
def update_statement(dialect: Dialect, columns: tuple[str, ...]) -> str:
    """``UPDATE instances SET ...`` for these columns, the instance id last."""
    if not set(columns) <= set(UPDATABLE):
        raise ValueError(f"not updatable: {sorted(set(columns) - set(UPDATABLE))}")
    mark = dialect.mark
    assignments = ", ".join(
        f"{column} = {mark}{dialect.status_cast if column == 'status' else ''}"
        for column in columns
    )
    return f"UPDATE instances SET {assignments} WHERE instance_id = {mark}"


def instance_conditions(
    dialect: Dialect, tenant_id: str | None, status: records.InstanceStatus | None
) -> tuple[str, list[object]]:
    conditions: list[str] = []
    params: list[object] = []
    if tenant_id is not None:
        conditions.append(f"tenant_id = {dialect.mark}")
        params.append(tenant_id)
    if status is not None:
        conditions.append(f"status = {dialect.mark}{dialect.status_cast}")
        params.append(status.value)
    return where(conditions), params


def checkpoint_conditions(
    dialect: Dialect, instance_id: str, wanted: records.CheckpointFilter
) -> tuple[str, list[object]]:
    checkpoint_id = wanted.checkpoint_id
    created_after = wanted.created_after
    created_before = wanted.created_before
    mark = dialect.mark
    conditions = [f"instance_id = {mark}"]
    params: list[object] = [instance_id]
    if checkpoint_id is not None:
        conditions.append(f"checkpoint_id = {mark}")
        params.append(checkpoint_id)
    if created_after is not None:
        conditions.append(f"created_at >= {mark}")
        params.append(dialect.time_param(created_after))
    if created_before is not None:
        conditions.append(f"created_at < {mark}")
        params.append(dialect.time_param(created_before))
    return where(conditions), params


def event_conditions(
    dialect: Dialect, instance_id: str, event_filter: records.EventFilter
) -> tuple[str, list[object]]:
    mark = dialect.mark
    conditions = [f"instance_id = {mark}"]
    params: list[object] = [instance_id]
    if event_filter.event_type is not None:
        conditions.append(f"event_type = {mark}{dialect.event_type_cast}")
        params.append(event_filter.event_type.value)
    if event_filter.subtype is not None:
        conditions.append(f"subtype = {mark}")
        params.append(event_filter.subtype)
    if event_filter.created_after is not None:
        conditions.append(f"created_at >= {mark}")
        params.append(dialect.time_param(event_filter.created_after))
    if event_filter.created_before is not None:
        conditions.append(f"created_at < {mark}")
        params.append(dialect.time_param(event_filter.created_before))
    if event_filter.payload_contains is not None:
        conditions.append(dialect.payload_contains)
        params.append(event_filter.payload_contains)
    return where(conditions), params


def instance_from_row(row: tuple, to_time: Callable[[Any], dt.datetime | None]) -> records.Instance:
    """Columns: id, tenant, status, created, checkpoint, started, finished,
    output, error, sleep_until, last_activity, wake_claimed_until."""
    return records.Instance(
        instance_id=row[0],
        tenant_id=row[1],
        status=records.InstanceStatus(row[2]),
        created_at=to_time(row[3]),
        checkpoint_id=row[4],
        started_at=to_time(row[5]),
        finished_at=to_time(row[6]),
        output=None if row[7] is None else bytes(row[7]),
        error=row[8],
        sleep_until=to_time(row[9]),
        last_activity_at=to_time(row[10]),
        wake_claimed_until=to_time(row[11]),
    )


def event_from_row(row: tuple, to_time: Callable[[Any], dt.datetime | None]) -> records.Event:
    """Columns: id, instance, type, checkpoint, payload, created, subtype."""
    return records.Event(
        id=row[0],
        instance_id=row[1],
        event_type=records.EventType(row[2]),
        checkpoint_id=row[3],
        payload=None if row[4] is None else bytes(row[4]),
        created_at=to_time(row[5]),
        subtype=row[6],
    )
