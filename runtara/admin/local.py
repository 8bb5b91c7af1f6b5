"""Operator actions carried out directly on a storage driver.

Signals follow upstream's rules: the instance must exist
and not be finished; a new instance-wide signal replaces the pending one; a
custom signal needs a checkpoint id. The instance sees them on its next
Checkpoint or PollSignals.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Generic, TypeVar

import attrs

from runtara import clock, errors, records
from runtara.storage import base

T = TypeVar("T")


@attrs.frozen
class Page(Generic[T]):
    items: list[T]
    total: int
    """How many items match, across all pages."""


@attrs.frozen
class InstanceDetails:
    instance: records.Instance
    pending_signal: records.Signal | None
    custom_signals: list[records.CustomSignal]
    recent_events: list[records.Event]
    """Newest first."""


def _require_id(value: str, name: str) -> None:
    if not value:
        raise errors.OperationRefused(f"{name} is required")
    if "\x00" in value:
        raise errors.OperationRefused(f"{name} must not contain NUL characters")


class LocalAdmin:
    def __init__(
        self, storage: base.StorageDriver, now: Callable[[], dt.datetime] = clock.utc_now
    ) -> None:
        self.storage = storage
        self._now = now

    def describe(self) -> str:
        return f"storage {self.storage.describe()}"

    def health(self) -> str:
        """One line saying the storage answers; raises StorageUnavailable if not."""
        self.storage.check()
        return f"storage {self.storage.describe()} is reachable"

    def _signalable(self, tx: base.Transaction, instance_id: str) -> None:
        instance = tx.get_instance(instance_id)
        if instance is None:
            raise errors.OperationRefused(f"Instance '{instance_id}' not found")
        if instance.status.is_terminal:
            raise errors.OperationRefused(
                f"Cannot send signal to instance in '{instance.status.value}' state (terminal state)"
            )

    def send_signal(
        self, instance_id: str, signal_type: records.SignalType, payload: bytes
    ) -> None:
        _require_id(instance_id, "instance_id")

        def work(tx: base.Transaction) -> None:
            self._signalable(tx, instance_id)
            tx.put_signal(instance_id, signal_type, payload, self._now())

        self.storage.run(work)

    def send_custom_signal(self, instance_id: str, checkpoint_id: str, payload: bytes) -> None:
        _require_id(instance_id, "instance_id")
        _require_id(checkpoint_id, "checkpoint_id")

        def work(tx: base.Transaction) -> None:
            self._signalable(tx, instance_id)
            tx.put_custom_signal(instance_id, checkpoint_id, payload, self._now())

        self.storage.run(work)

    def list_instances(
        self,
        *,
        tenant_id: str | None = None,
        status: records.InstanceStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[records.Instance]:
        def work(tx: base.Transaction) -> Page[records.Instance]:
            return Page(
                tx.list_instances(tenant_id=tenant_id, status=status, limit=limit, offset=offset),
                tx.count_instances(tenant_id=tenant_id, status=status),
            )

        return self.storage.run(work, write=False)

    def instance_details(self, instance_id: str, recent_events: int = 10) -> InstanceDetails | None:
        def work(tx: base.Transaction) -> InstanceDetails | None:
            instance = tx.get_instance(instance_id)
            if instance is None:
                return None
            return InstanceDetails(
                instance,
                tx.get_pending_signal(instance_id),
                tx.list_custom_signals(instance_id),
                tx.list_events(instance_id, limit=recent_events) if recent_events else [],
            )

        return self.storage.run(work, write=False)

    def count_active(self) -> int:
        def work(tx: base.Transaction) -> int:
            return tx.count_instances(status=records.InstanceStatus.RUNNING) + tx.count_instances(
                status=records.InstanceStatus.SUSPENDED
            )

        return self.storage.run(work, write=False)

    def list_checkpoints(
        self,
        instance_id: str,
        *,
        checkpoint_id: str | None = None,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[base.CheckpointInfo]:
        def work(tx: base.Transaction) -> Page[base.CheckpointInfo]:
            self._existing(tx, instance_id)
            filters = dict(
                checkpoint_id=checkpoint_id,
                created_after=created_after,
                created_before=created_before,
            )
            return Page(
                tx.list_checkpoints(instance_id, limit=limit, offset=offset, **filters),
                tx.count_checkpoints(instance_id, **filters),
            )

        return self.storage.run(work, write=False)

    def get_checkpoint(self, instance_id: str, checkpoint_id: str) -> records.Checkpoint | None:
        def work(tx: base.Transaction) -> records.Checkpoint | None:
            self._existing(tx, instance_id)
            return tx.get_checkpoint(instance_id, checkpoint_id)

        return self.storage.run(work, write=False)

    def list_events(
        self,
        instance_id: str,
        event_filter: base.EventFilter = base.ALL_EVENTS,
        *,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[records.Event]:
        def work(tx: base.Transaction) -> Page[records.Event]:
            self._existing(tx, instance_id)
            return Page(
                tx.list_events(instance_id, event_filter, limit=limit, offset=offset),
                tx.count_events(instance_id, event_filter),
            )

        return self.storage.run(work, write=False)

    @staticmethod
    def _existing(tx: base.Transaction, instance_id: str) -> None:
        if tx.get_instance(instance_id) is None:
            raise errors.OperationRefused(f"Instance '{instance_id}' not found")
