"""The instance protocol's operations as single calls of server-side functions.

:class:`ServerSideOperations` replaces the ten operation methods of
:class:`~runtara.storage.base.StorageDriver` (which run the rules of
:mod:`runtara.storage.operations` through ``run``) with one statement each:
the named query ``call_<operation>``, which calls the PL/pgSQL function of
migration 0006 doing what the rule does. The statement is its whole
transaction, so an operation costs one round trip (a checkpoint through
``run`` took seven: BEGIN, the row lock, the insert, the update, the two signal
reads, COMMIT). A refusal comes back as the rule's exception (see
:mod:`runtara.drivers.postgres.refusals`).
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Mapping
from typing import Any

from runtara import records
from runtara.drivers.postgres.transaction import utc
from runtara.records import EventType, SignalType
from runtara.storage import base, operations, sqlbase

_MICROSECOND = dt.timedelta(microseconds=1)


class ServerSideOperations(base.StorageDriver):
    """A driver whose instance-protocol operations are calls of server-side functions."""

    @abc.abstractmethod
    def _call(self, name: str, params: Mapping[str, Any]) -> tuple | None:
        """Send the named query as one statement in its own transaction and return
        its first row (None if it has none); raise the rule's exception for a
        refusal, and StorageError / StorageUnavailable as ``run`` does."""

    def register_instance(
        self,
        instance_id: str,
        tenant_id: str,
        checkpoint_id: str | None,
        now: dt.datetime,
        registration: int | None = None,
    ) -> int:
        row = self._call(
            "call_register_instance",
            {
                "instance_id": instance_id,
                "tenant_id": tenant_id,
                "checkpoint_id": checkpoint_id,
                "now": now,
                "registration": registration,
            },
        )
        return row[0]

    def checkpoint(
        self,
        instance_id: str,
        checkpoint_id: str,
        state: bytes,
        now: dt.datetime,
        registration: int | None = None,
    ) -> records.CheckpointOutcome:
        existed, stored, *signals = self._call(
            "call_checkpoint",
            {
                "instance_id": instance_id,
                "checkpoint_id": checkpoint_id,
                "state": state,
                "now": now,
                "registration": registration,
            },
        )
        return records.CheckpointOutcome(
            existed, bytes(stored), _signals(instance_id, checkpoint_id, signals)
        )

    def get_checkpoint(
        self,
        instance_id: str,
        checkpoint_id: str,
        now: dt.datetime,
        registration: int | None = None,
    ) -> bytes | None:
        (state,) = self._call(
            "call_get_checkpoint",
            {
                "instance_id": instance_id,
                "checkpoint_id": checkpoint_id,
                "now": now,
                "registration": registration,
            },
        )
        return None if state is None else bytes(state)

    def begin_sleep(
        self,
        instance_id: str,
        duration: dt.timedelta,
        checkpoint_id: str,
        state: bytes,
        now: dt.datetime,
        registration: int | None = None,
    ) -> dt.datetime:
        (until,) = self._call(
            "call_begin_sleep",
            {
                "instance_id": instance_id,
                "duration_us": duration // _MICROSECOND,
                "checkpoint_id": checkpoint_id,
                "state": state,
                "now": now,
                "registration": registration,
            },
        )
        return utc(until)

    def finish_sleep(self, instance_id: str, sleep_until: dt.datetime, now: dt.datetime) -> None:
        self._call(
            "call_finish_sleep",
            {"instance_id": instance_id, "sleep_until": sleep_until, "now": now},
        )

    def record_event(
        self,
        instance_id: str,
        kind: EventType,
        payload: bytes,
        now: dt.datetime,
        *,
        checkpoint_id: str | None = None,
        subtype: str | None = None,
        registration: int | None = None,
    ) -> None:
        self._call(
            "call_record_event",
            {
                "instance_id": instance_id,
                "kind": kind.value,
                "payload": payload,
                # Decoded here, so that the text is exactly the engine's.
                "error": operations.failure_text(payload) if kind is EventType.FAILED else None,
                "now": now,
                "checkpoint_id": checkpoint_id,
                "subtype": subtype,
                "registration": registration,
            },
        )

    def instance_status(self, instance_id: str, now: dt.datetime) -> records.Instance | None:
        row = self._call("call_instance_status", {"instance_id": instance_id, "now": now})
        return None if row is None else sqlbase.instance_from_row(row, utc)

    def poll_signals(
        self,
        instance_id: str,
        checkpoint_id: str | None,
        now: dt.datetime,
        registration: int | None = None,
    ) -> records.Signals:
        row = self._call(
            "call_poll_signals",
            {
                "instance_id": instance_id,
                "checkpoint_id": checkpoint_id,
                "now": now,
                "registration": registration,
            },
        )
        return _signals(instance_id, checkpoint_id, row)

    def acknowledge_signal(
        self,
        instance_id: str,
        signal_type: SignalType,
        acknowledged: bool,
        now: dt.datetime,
        registration: int | None = None,
    ) -> None:
        self._call(
            "call_acknowledge_signal",
            {
                "instance_id": instance_id,
                "signal_type": signal_type.value,
                "acknowledged": acknowledged,
                "now": now,
                "registration": registration,
            },
        )

    def record_retry(
        self,
        instance_id: str,
        checkpoint_id: str,
        attempt: int,
        error_message: str | None,
        now: dt.datetime,
        registration: int | None = None,
    ) -> None:
        self._call(
            "call_record_retry",
            {
                "instance_id": instance_id,
                "checkpoint_id": checkpoint_id,
                "attempt": attempt,
                "error_message": error_message,
                "now": now,
                "registration": registration,
            },
        )


def _signals(instance_id: str, checkpoint_id: str | None, columns) -> records.Signals:
    """Columns: pending type, payload and time; custom payload and time (NULLs: none)."""
    pending_type, pending_payload, pending_at, custom_payload, custom_at = columns
    return records.Signals(
        pending=None
        if pending_type is None
        else records.Signal(
            instance_id, SignalType(pending_type), bytes(pending_payload or b""), utc(pending_at)
        ),
        custom=None
        if custom_at is None
        else records.CustomSignal(
            instance_id, checkpoint_id, bytes(custom_payload or b""), utc(custom_at)
        ),
    )
