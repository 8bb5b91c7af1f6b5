"""Operator actions carried out directly on a storage driver.

Signals follow upstream's rules (see :mod:`runtara.storage.operations`): the
instance must exist and not be finished; a new instance-wide signal replaces
the pending one; a custom signal needs a checkpoint id. The instance sees
them on its next Checkpoint or PollSignals.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from runtara import clock, records
from runtara.admin.base import Admin
from runtara.storage import base, operations


class LocalAdmin(Admin):
    def __init__(
        self, storage: base.StorageDriver, now: Callable[[], dt.datetime] = clock.utc_now
    ) -> None:
        self.storage = storage
        self._now = now

    def describe(self) -> str:
        return f"storage {self.storage.describe()}"

    def health(self) -> str:
        self.storage.check()
        return f"storage {self.storage.describe()} is reachable and writable"

    def _read(self, work):
        return self.storage.run(work, write=False)

    def send_signal(
        self, instance_id: str, signal_type: records.SignalType, payload: bytes
    ) -> None:
        now = self._now()
        self.storage.run(
            lambda tx: operations.send_signal(tx, instance_id, signal_type, payload, now)
        )

    def send_custom_signal(self, instance_id: str, checkpoint_id: str, payload: bytes) -> None:
        now = self._now()
        self.storage.run(
            lambda tx: operations.send_custom_signal(tx, instance_id, checkpoint_id, payload, now)
        )

    def list_instances(self, *, tenant_id=None, status=None, limit=100, offset=0):
        return self._read(
            lambda tx: operations.list_instances(
                tx, tenant_id=tenant_id, status=status, limit=limit, offset=offset
            )
        )

    def instance_details(self, instance_id: str, recent_events: int = 10):
        return self._read(lambda tx: operations.instance_details(tx, instance_id, recent_events))

    def list_checkpoints(
        self, instance_id, checkpoint_filter=records.ALL_CHECKPOINTS, *, limit=100, offset=0
    ):
        return self._read(
            lambda tx: operations.list_checkpoints(
                tx, instance_id, checkpoint_filter, limit=limit, offset=offset
            )
        )

    def get_checkpoint(self, instance_id: str, checkpoint_id: str):
        return self._read(lambda tx: operations.read_checkpoint(tx, instance_id, checkpoint_id))

    def list_events(self, instance_id, event_filter=records.ALL_EVENTS, *, limit=100, offset=0):
        return self._read(
            lambda tx: operations.list_events(
                tx, instance_id, event_filter, limit=limit, offset=offset
            )
        )

    def close(self) -> None:
        self.storage.close()
