"""MemoryDriver: the whole store in one process's memory.

The reference implementation of the storage contract, for tests and for
reading: it passes the conformance kit like the SQL drivers, and the protocol
behaviour tests run the server's core against it. One lock serializes
transactions; each works on a copy of the tables (cheap: the records are
immutable and shared) that replaces the original only if the work succeeds, so
a failing transaction leaves nothing. Everything is gone when the process ends.

It is not registered as a driver by runtara-core itself;
``examples/runtara-memory-driver`` publishes it as the ``memory`` driver.
"""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import threading
from collections.abc import Callable
from typing import TypeVar

import attrs

from runtara import errors, records
from runtara.storage import base

T = TypeVar("T")


@attrs.define
class Tables:
    """Plain dictionaries of immutable records."""

    instances: dict[str, records.Instance] = attrs.Factory(dict)
    checkpoints: dict[tuple[str, str], tuple[int, records.Checkpoint]] = attrs.Factory(dict)
    """(instance, checkpoint id) -> (insertion number, checkpoint)."""
    events: list[records.Event] = attrs.Factory(list)
    signals: dict[str, records.Signal] = attrs.Factory(dict)
    acknowledged: set[str] = attrs.Factory(set)
    """Instances whose signal in ``signals`` is acknowledged."""
    custom_signals: dict[tuple[str, str], records.CustomSignal] = attrs.Factory(dict)
    launches: dict[str, records.Launch] = attrs.Factory(dict)
    counter: itertools.count = attrs.Factory(lambda: itertools.count(1))
    queues: dict[str, records.Queue] = attrs.Factory(dict)
    queue_starts: list[tuple[str, dt.datetime]] = attrs.Factory(list)
    schedules: dict[str, records.Schedule] = attrs.Factory(dict)

    def copy(self) -> Tables:
        """A copy that a transaction may change freely (the records are immutable)."""
        return Tables(
            dict(self.instances),
            dict(self.checkpoints),
            list(self.events),
            dict(self.signals),
            set(self.acknowledged),
            dict(self.custom_signals),
            dict(self.launches),
            self.counter,
            dict(self.queues),
            list(self.queue_starts),
            dict(self.schedules),
        )


def _page(rows: list, limit: int, offset: int) -> list:
    return rows[offset : offset + limit]


def _in_range(value: dt.datetime, after: dt.datetime | None, before: dt.datetime | None) -> bool:
    return (after is None or value >= after) and (before is None or value < before)


class MemoryTransaction(base.Transaction):
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    def _require(self, instance_id: str) -> None:
        # What a foreign key does in the SQL drivers.
        if instance_id not in self._tables.instances:
            raise errors.StorageError(f"Database error: no instance '{instance_id}'")

    # --- instances ------------------------------------------------------------

    def create_instance(self, instance_id: str, tenant_id: str, now: dt.datetime) -> bool:
        if instance_id in self._tables.instances:
            return False
        self._tables.instances[instance_id] = records.Instance(
            instance_id, tenant_id, records.InstanceStatus.PENDING, created_at=now
        )
        return True

    def get_instance(self, instance_id: str) -> records.Instance | None:
        return self._tables.instances.get(instance_id)

    def update_instance(self, instance_id: str, update: records.InstanceUpdate) -> None:
        instance = self._tables.instances.get(instance_id)
        if instance is not None:
            self._tables.instances[instance_id] = attrs.evolve(instance, **update.changes())

    def _instances(self, tenant_id, status) -> list[records.Instance]:
        found = [
            instance
            for instance in self._tables.instances.values()
            if (tenant_id is None or instance.tenant_id == tenant_id)
            and (status is None or instance.status is status)
        ]
        found.sort(key=lambda i: i.instance_id)
        found.sort(key=lambda i: i.created_at, reverse=True)
        return found

    def list_instances(self, *, tenant_id=None, status=None, limit=100, offset=0):
        return _page(self._instances(tenant_id, status), limit, offset)

    def count_instances(self, *, tenant_id=None, status=None) -> int:
        return len(self._instances(tenant_id, status))

    def list_due_sleepers(self, *, due_before, limit):
        due = [
            instance
            for instance in self._tables.instances.values()
            if instance.status is records.InstanceStatus.SUSPENDED
            and instance.instance_id not in self._tables.launches
            and instance.sleep_until is not None
            and instance.sleep_until <= due_before
        ]
        due.sort(key=lambda i: (i.sleep_until, i.instance_id))
        return due[:limit]

    def list_stale_instances(self, cutoff, limit):
        def activity(instance):
            return instance.last_activity_at or instance.started_at or instance.created_at

        stale = [
            instance
            for instance in self._tables.instances.values()
            if instance.status is records.InstanceStatus.RUNNING and activity(instance) < cutoff
        ]
        stale.sort(key=lambda i: (activity(i), i.instance_id))
        return stale[:limit]

    def list_finished_before(self, cutoff, limit):
        finished = [
            instance
            for instance in self._tables.instances.values()
            if instance.status.is_terminal
            and instance.finished_at is not None
            and instance.finished_at < cutoff
        ]
        finished.sort(key=lambda i: (i.finished_at, i.instance_id))
        return [instance.instance_id for instance in finished[:limit]]

    def delete_instance(self, instance_id):
        tables = self._tables
        if tables.instances.pop(instance_id, None) is None:
            return False
        for key in [key for key in tables.checkpoints if key[0] == instance_id]:
            del tables.checkpoints[key]
        tables.events[:] = [event for event in tables.events if event.instance_id != instance_id]
        tables.signals.pop(instance_id, None)
        tables.acknowledged.discard(instance_id)
        tables.launches.pop(instance_id, None)
        for key in [key for key in tables.custom_signals if key[0] == instance_id]:
            del tables.custom_signals[key]
        return True

    # --- checkpoints ----------------------------------------------------------

    def insert_checkpoint(self, instance_id, checkpoint_id, state, now) -> bool:
        self._require(instance_id)
        key = (instance_id, checkpoint_id)
        if key in self._tables.checkpoints:
            return False
        checkpoint = records.Checkpoint(instance_id, checkpoint_id, bytes(state), now)
        self._tables.checkpoints[key] = (next(self._tables.counter), checkpoint)
        return True

    def get_checkpoint(self, instance_id, checkpoint_id):
        found = self._tables.checkpoints.get((instance_id, checkpoint_id))
        return None if found is None else found[1]

    def save_retry_attempt(self, instance_id, checkpoint_id, attempt, error_message, now) -> None:
        self._require(instance_id)
        retry_id = f"{checkpoint_id}::retry::{attempt}"
        state = (error_message or "").encode("utf-8")
        self._tables.checkpoints[(instance_id, retry_id)] = (
            next(self._tables.counter),
            records.Checkpoint(instance_id, retry_id, state, now),
        )

    def _checkpoints(self, instance_id, wanted: records.CheckpointFilter):
        found = [
            (number, checkpoint)
            for (owner, name), (number, checkpoint) in self._tables.checkpoints.items()
            if owner == instance_id
            and (wanted.checkpoint_id is None or name == wanted.checkpoint_id)
            and _in_range(checkpoint.created_at, wanted.created_after, wanted.created_before)
        ]
        found.sort(key=lambda item: (item[1].created_at, item[0]), reverse=True)
        return [checkpoint for _, checkpoint in found]

    def list_checkpoints(
        self, instance_id, checkpoint_filter=records.ALL_CHECKPOINTS, *, limit=100, offset=0
    ):
        rows = self._checkpoints(instance_id, checkpoint_filter)
        return [
            records.CheckpointInfo(c.instance_id, c.checkpoint_id, len(c.state), c.created_at)
            for c in _page(rows, limit, offset)
        ]

    def count_checkpoints(self, instance_id, checkpoint_filter=records.ALL_CHECKPOINTS) -> int:
        return len(self._checkpoints(instance_id, checkpoint_filter))

    # --- events ---------------------------------------------------------------

    def insert_event(self, event: records.Event) -> int:
        self._require(event.instance_id)
        number = next(self._tables.counter)
        self._tables.events.append(attrs.evolve(event, id=number))
        return number

    def _events(self, instance_id, wanted: records.EventFilter) -> list[records.Event]:
        needle = (wanted.payload_contains or "").lower().encode("utf-8")
        found = [
            event
            for event in self._tables.events
            if event.instance_id == instance_id
            and (wanted.event_type is None or event.event_type is wanted.event_type)
            and (wanted.subtype is None or event.subtype == wanted.subtype)
            and _in_range(event.created_at, wanted.created_after, wanted.created_before)
            and (
                wanted.payload_contains is None
                or (event.payload is not None and needle in event.payload.lower())
            )
        ]
        found.sort(key=lambda event: (event.created_at, event.id), reverse=True)
        return found

    def list_events(self, instance_id, event_filter=records.ALL_EVENTS, *, limit=100, offset=0):
        return _page(self._events(instance_id, event_filter), limit, offset)

    def count_events(self, instance_id, event_filter=records.ALL_EVENTS) -> int:
        return len(self._events(instance_id, event_filter))

    # --- signals --------------------------------------------------------------

    def put_signal(self, instance_id, signal_type, payload, now) -> None:
        self._require(instance_id)
        self._tables.signals[instance_id] = records.Signal(
            instance_id, signal_type, bytes(payload), now
        )
        self._tables.acknowledged.discard(instance_id)

    def get_pending_signal(self, instance_id):
        if instance_id in self._tables.acknowledged:
            return None
        return self._tables.signals.get(instance_id)

    def acknowledge_signal(self, instance_id, signal_type, now) -> bool:
        signal = self.get_pending_signal(instance_id)
        if signal is None or signal.signal_type is not signal_type:
            return False
        self._tables.acknowledged.add(instance_id)
        return True

    def put_custom_signal(self, instance_id, checkpoint_id, payload, now) -> None:
        self._require(instance_id)
        self._tables.custom_signals[(instance_id, checkpoint_id)] = records.CustomSignal(
            instance_id, checkpoint_id, bytes(payload), now
        )

    def take_custom_signal(self, instance_id, checkpoint_id):
        return self._tables.custom_signals.pop((instance_id, checkpoint_id), None)

    def list_custom_signals(self, instance_id):
        found = [s for (owner, _), s in self._tables.custom_signals.items() if owner == instance_id]
        return sorted(found, key=lambda s: (s.created_at, s.checkpoint_id))

    # --- launches -------------------------------------------------------------

    def insert_launch(self, launch):
        self._require(launch.instance_id)
        if launch.instance_id in self._tables.launches:
            raise errors.StorageError(f"Database error: '{launch.instance_id}' has a launch")
        self._tables.launches[launch.instance_id] = launch

    def get_launch(self, instance_id):
        return self._tables.launches.get(instance_id)

    def update_launch(self, instance_id, update, *, held_by=None):
        launch = self._tables.launches.get(instance_id)
        changes = update.changes()
        if launch is None or not changes or (held_by is not None and launch.holder != held_by):
            return False
        self._tables.launches[instance_id] = attrs.evolve(launch, **changes)
        return True

    def list_due_launches(self, *, now, limit):
        def admitted(launch):
            queue = self._tables.queues.get(launch.queue)
            if queue is None:
                return True
            if queue.paused:
                return False
            if queue.concurrency is not None and self.count_claimed(launch.queue) >= (
                queue.concurrency
            ):
                return False
            if (
                queue.per_key is not None
                and launch.key is not None
                and self.count_claimed(launch.queue, launch.key) >= queue.per_key
            ):
                return False
            return queue.rate_limit is None or (
                self.count_queue_starts(launch.queue, now) < queue.rate_limit
            )

        due = sorted(
            (
                launch
                for launch in self._tables.launches.values()
                if launch.next_launch_at is not None
                and launch.next_launch_at <= now
                and (launch.claimed_until is None or launch.claimed_until <= now)
                and admitted(launch)
            ),
            key=lambda launch: (launch.next_launch_at, launch.instance_id),
        )
        turns: collections.Counter = collections.Counter()
        ranked = []
        for launch in due:
            group = (launch.queue, launch.priority, launch.key)
            turns[group] += 1
            ranked.append((-launch.priority, turns[group], launch.next_launch_at, launch))
        ranked.sort(key=lambda each: each[:3] + (each[3].instance_id,))
        return [each[3].instance_id for each in ranked[:limit]]

    def list_lapsed_launches(self, *, now, due_before, limit):
        def lapsed(launch):
            instance = self._tables.instances[launch.instance_id]
            if launch.claimed_by is not None:
                return launch.claimed_until is not None and launch.claimed_until <= now
            if launch.next_launch_at is not None or instance.status.is_terminal:
                return False
            if instance.status is records.InstanceStatus.SUSPENDED:
                return instance.sleep_until is not None and instance.sleep_until <= due_before
            return True

        found = sorted(
            (launch for launch in self._tables.launches.values() if lapsed(launch)),
            key=lambda launch: launch.instance_id,
        )
        return found[:limit]

    def list_claimed_launches(self, *, claimed_by, limit):
        mine = [each for each in self._tables.launches.values() if each.claimed_by == claimed_by]
        return sorted(mine, key=lambda launch: launch.instance_id)[:limit]

    def list_children(self, parent_instance):
        mine = [
            each
            for each in self._tables.launches.values()
            if each.parent_instance == parent_instance
        ]
        return sorted(mine, key=lambda launch: launch.instance_id)

    # --- queues -------------------------------------------------------------------

    def get_queue(self, name, *, lock=False):
        return self._tables.queues.get(name)

    def list_queues(self):
        return [self._tables.queues[name] for name in sorted(self._tables.queues)]

    def lock_queues(self) -> None:
        """Write transactions run one at a time."""

    def put_queue(self, queue):
        self._tables.queues[queue.name] = queue

    def count_claimed(self, queue, key=None):
        return sum(
            1
            for launch in self._tables.launches.values()
            if launch.queue == queue
            and launch.claimed_by is not None
            and (key is None or launch.key == key)
        )

    def record_queue_start(self, queue, now, expires_at):
        self._tables.queue_starts = [
            (name, expiry)
            for name, expiry in self._tables.queue_starts
            if name != queue or expiry > now
        ]
        self._tables.queue_starts.append((queue, expires_at))

    def count_queue_starts(self, queue, now):
        return sum(
            1 for name, expiry in self._tables.queue_starts if name == queue and expiry > now
        )

    def queue_figures(self, now):
        figures: dict[str, list[int]] = {}
        for launch in self._tables.launches.values():
            if launch.claimed_by is not None:
                index = 0
            elif launch.next_launch_at is None:
                continue
            else:
                index = 1 if launch.next_launch_at <= now else 2
            figures.setdefault(launch.queue, [0, 0, 0])[index] += 1
        return {name: records.QueueFigures(*figures[name]) for name in sorted(figures)}

    # --- schedules ----------------------------------------------------------------

    def get_schedule(self, name, *, lock=False):
        return self._tables.schedules.get(name)

    def list_schedules(self):
        return [self._tables.schedules[name] for name in sorted(self._tables.schedules)]

    def list_due_schedules(self, *, now, limit):
        due = sorted(
            (schedule.next_tick_at, schedule.name)
            for schedule in self._tables.schedules.values()
            if not schedule.paused and schedule.next_tick_at <= now
        )
        return [name for _, name in due[:limit]]

    def put_schedule(self, schedule):
        self._tables.schedules[schedule.name] = schedule

    def delete_schedule(self, name):
        return self._tables.schedules.pop(name, None) is not None


class MemoryDriver(base.StorageDriver):
    url_schemes = ("memory",)

    def __init__(self, url: str | None = None, *, workers: int = 32) -> None:
        if url not in (None, "", "memory:"):
            raise errors.ConfigError(f"the memory driver takes no URL but 'memory:', not {url!r}")
        self._lock = threading.Lock()
        self._tables: Tables | None = None

    def describe(self) -> str:
        return "memory (everything is lost when the process ends)"

    def migrate(self) -> list[str]:
        with self._lock:
            if self._tables is not None:
                return []
            self._tables = Tables()
            return ["memory tables"]

    def run(self, work: Callable[[base.Transaction], T], *, write: bool = True) -> T:
        with self._lock:
            if self._tables is None:
                raise errors.StorageUnavailable(
                    "the memory store has no tables: run migrate() first"
                )
            tables = self._tables.copy()
            result = work(MemoryTransaction(tables))
            if write:
                self._tables = tables
            return result

    def check(self) -> None:
        if self._tables is None:
            raise errors.StorageUnavailable("the memory store has no tables yet")

    def close(self) -> None:
        with self._lock:
            self._tables = None
