"""Operator actions carried out directly on a storage driver.

Signals follow upstream's rules (see :mod:`runtara.storage.operations`): the
instance must exist and not be finished; a new instance-wide signal replaces
the pending one; a custom signal needs a checkpoint id. The instance sees
them on its next Checkpoint or PollSignals.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from runtara import clock, errors, records
from runtara.admin.base import Admin
from runtara.launcher import logs
from runtara.launcher import spec as specs
from runtara.launcher.spec import LaunchSpec
from runtara.records import UNCHANGED
from runtara.storage import base, launches, listing, operations, queues, schedules


class LocalAdmin(Admin):
    def __init__(
        self,
        storage: base.StorageDriver,
        now: Callable[[], dt.datetime] = clock.utc_now,
        *,
        runs_dir: Path | None = None,
    ) -> None:
        self.storage = storage
        self._now = now
        self.runs_dir = runs_dir
        """Where launched instances' logs are (the server's --runs-dir)."""

    def describe(self) -> str:
        return f"storage {self.storage.describe()}"

    def health(self) -> str:
        self.storage.check()
        return f"storage {self.storage.describe()} is reachable and writable"

    def stats(self) -> dict[str, float]:
        raise errors.OperationRefused(
            "the counters are a running server's: name it with --server HOST:PORT "
            "(its --management-addr)"
        )

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

    def list_instances(
        self,
        *,
        tenant_id=None,
        status=None,
        limit=100,
        offset=0,
        after=None,
        before=None,
        count_at_most=None,
    ):
        return self._read(
            lambda tx: listing.list_instances(
                tx,
                tenant_id=tenant_id,
                status=status,
                limit=limit,
                offset=offset,
                after=after,
                before=before,
                count_at_most=count_at_most,
            )
        )

    def instance_details(self, instance_id: str, recent_events: int = 10):
        now = self._now()
        return self._read(
            lambda tx: operations.instance_details(tx, instance_id, recent_events, now)
        )

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

    def start_instance(
        self,
        instance_id,
        tenant_id,
        spec: LaunchSpec,
        payload,
        *,
        replace=False,
        not_before=None,
        delay=None,
    ):
        operations.require_id(instance_id, "instance_id")
        operations.require_id(tenant_id, "tenant_id")
        now = self._now()
        due = launches.due_time(now, not_before, delay)
        return self.storage.run(
            lambda tx: launches.start_instance(
                tx,
                instance_id,
                tenant_id,
                spec.to_json(),
                payload,
                spec.max_failures,
                now,
                replace=replace,
                queue=spec.queue,
                key=spec.key,
                priority=spec.priority,
                not_before=due,
            )
        )

    def retry_instance(
        self, instance_id: str, env: dict[str, str], payload: bytes | None
    ) -> str | None:
        operations.require_id(instance_id, "instance_id")
        now = self._now()
        instance = self.storage.run(
            lambda tx: launches.retry(
                tx,
                instance_id,
                now,
                respec=(lambda stored: specs.with_env(stored, env)) if env else None,
                payload=records.UNCHANGED if payload is None else payload,
            )
        )
        return instance.checkpoint_id

    def fork_instance(
        self,
        instance_id: str,
        checkpoint_id: str | None,
        new_id: str | None,
        env: dict[str, str],
        payload: bytes | None,
    ) -> tuple[str, str]:
        operations.require_id(instance_id, "instance_id")
        new_id = launches.fork_id(instance_id) if new_id is None else new_id
        operations.require_id(new_id, "new_id")
        if checkpoint_id is not None:
            operations.require_id(checkpoint_id, "checkpoint_id")
        now = self._now()
        forked_at = self.storage.run(
            lambda tx: launches.fork(
                tx,
                instance_id,
                checkpoint_id,
                new_id,
                now,
                respec=(lambda stored: specs.with_env(stored, env)) if env else None,
                payload=records.UNCHANGED if payload is None else payload,
            )
        )
        return new_id, forked_at

    def stop_instance(self, instance_id: str, grace: float) -> bool:
        now = self._now()
        return self.storage.run(
            lambda tx: launches.request_stop(tx, instance_id, dt.timedelta(seconds=grace), now)
        )

    def give_up_stop(self, instance_id: str, reason: str) -> bool:
        now = self._now()
        return self.storage.run(lambda tx: launches.cancel_unanswered(tx, instance_id, reason, now))

    def read_log(self, instance_id: str, stream: str, offset: int) -> tuple[bytes, int]:
        if stream not in logs.STREAMS:
            raise ValueError(f"no log stream {stream!r}")
        if self.runs_dir is None:
            return b"", 0
        return logs.read_from(logs.log_path(self.runs_dir, instance_id, stream), offset)

    def set_queue(
        self, name, *, concurrency=UNCHANGED, per_key=UNCHANGED, rate=UNCHANGED, paused=UNCHANGED
    ):
        return self.storage.run(
            lambda tx: queues.set_queue(
                tx, name, concurrency=concurrency, per_key=per_key, rate=rate, paused=paused
            )
        )

    def list_queues(self):
        now = self._now()
        return self._read(lambda tx: queues.list_queues(tx, now))

    def add_schedule(
        self,
        name,
        *,
        cron,
        every,
        timezone,
        overlap,
        catch_up,
        tenant_id,
        spec: LaunchSpec,
        payload,
        replace=False,
    ):
        now = self._now()
        return self.storage.run(
            lambda tx: schedules.add(
                tx,
                name,
                cron=cron,
                every=every,
                timezone=timezone,
                overlap=overlap,
                catch_up=catch_up,
                tenant_id=tenant_id,
                spec=spec.to_json(),
                payload=payload,
                now=now,
                replace=replace,
            )
        )

    def list_schedules(self):
        return self._read(lambda tx: tx.list_schedules())

    def pause_schedule(self, name, paused):
        now = self._now()
        return self.storage.run(lambda tx: schedules.set_paused(tx, name, paused, now))

    def remove_schedule(self, name):
        if not self.storage.run(lambda tx: schedules.remove(tx, name)):
            raise errors.OperationRefused(f"Schedule '{name}' not found")

    def trigger_schedule(self, name):
        now = self._now()
        return self.storage.run(lambda tx: schedules.trigger(tx, name, now))

    def close(self) -> None:
        self.storage.close()
