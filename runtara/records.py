"""What the storage holds: instances, checkpoints, events and signals.

Drivers return these records; handlers and tools read them. Times are
timezone-aware UTC datetimes; byte fields are ``bytes``.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, Generic, TypeVar

import attrs

from runtara import errors


class InstanceStatus(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUSPENDED = "suspended"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """Completed, failed and cancelled instances never change status again."""
        return self in _TERMINAL


_TERMINAL = frozenset({InstanceStatus.COMPLETED, InstanceStatus.FAILED, InstanceStatus.CANCELLED})


class EventType(str, enum.Enum):
    STARTED = "started"
    HEARTBEAT = "heartbeat"
    COMPLETED = "completed"
    FAILED = "failed"
    SUSPENDED = "suspended"
    CUSTOM = "custom"
    LAUNCHED = "launched"
    """Recorded by the launcher: an attempt's process started (attempt, pid, host)."""
    EXITED = "exited"
    """Recorded by the launcher: an attempt's process ended (attempt, code, signal, what
    follows, failures in a row, back-off)."""
    RETRIED = "retried"
    """Recorded by ``runtara-core retry``: a failed or cancelled instance goes on from
    its last checkpoint."""


class SignalType(str, enum.Enum):
    CANCEL = "cancel"
    PAUSE = "pause"
    RESUME = "resume"


@attrs.frozen
class Instance:
    instance_id: str
    tenant_id: str
    status: InstanceStatus
    created_at: dt.datetime
    checkpoint_id: str | None = None
    """The checkpoint saved last (not changed when a checkpoint is only read back)."""
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    output: bytes | None = None
    error: str | None = None
    sleep_until: dt.datetime | None = None
    """Set while the instance sleeps durably; a due value means it needs waking."""
    last_activity_at: dt.datetime | None = None
    """The last time any request of the instance reached the server."""
    wake_claimed_until: dt.datetime | None = None
    """While set and in the future, a wake scheduler is relaunching the instance."""
    registration: int = 0
    """How many times the instance was registered; the process holding the newest
    registration is the one allowed to progress."""


@attrs.frozen
class Checkpoint:
    instance_id: str
    checkpoint_id: str
    state: bytes
    created_at: dt.datetime


@attrs.frozen
class Event:
    instance_id: str
    event_type: EventType
    created_at: dt.datetime
    """Server time when the event was stored (never the client's clock)."""
    checkpoint_id: str | None = None
    payload: bytes | None = None
    subtype: str | None = None
    id: int | None = None
    """Storage-assigned, increasing in insertion order; None before insertion."""


@attrs.frozen
class Signal:
    """The instance-wide signal: at most one per instance, a new one replaces it."""

    instance_id: str
    signal_type: SignalType
    payload: bytes
    created_at: dt.datetime


@attrs.frozen
class CustomSignal:
    """A signal addressed to one checkpoint id of an instance, taken exactly once."""

    instance_id: str
    checkpoint_id: str
    payload: bytes
    created_at: dt.datetime


@attrs.frozen
class Signals:
    """What an instance is told at a checkpoint or a signal poll."""

    pending: Signal | None = None
    """The instance-wide signal not yet acknowledged."""
    custom: CustomSignal | None = None
    """The custom signal for the checkpoint id asked about, taken by this call."""


@attrs.frozen
class CheckpointOutcome:
    """The result of a Checkpoint: the id was new (``found`` false), or it already held
    ``state``, which the instance resumes from."""

    found: bool
    state: bytes
    signals: Signals


@attrs.frozen
class CheckpointInfo:
    """A checkpoint without its state, for listings."""

    instance_id: str
    checkpoint_id: str
    size: int
    created_at: dt.datetime


@attrs.frozen
class CheckpointFilter:
    """Which checkpoints a listing returns (all given conditions hold)."""

    checkpoint_id: str | None = None
    created_after: dt.datetime | None = None
    """Inclusive lower bound."""
    created_before: dt.datetime | None = None
    """Exclusive upper bound."""


ALL_CHECKPOINTS = CheckpointFilter()


@attrs.frozen
class EventFilter:
    """Which events a listing returns (all given conditions hold)."""

    event_type: EventType | None = None
    subtype: str | None = None
    created_after: dt.datetime | None = None
    """Inclusive lower bound."""
    created_before: dt.datetime | None = None
    """Exclusive upper bound."""
    payload_contains: str | None = None
    """Case-insensitive (ASCII) substring of the payload read as UTF-8 text."""


ALL_EVENTS = EventFilter()

T = TypeVar("T")


@attrs.frozen
class Page(Generic[T]):
    """One page of a listing."""

    items: list[T]
    total: int
    """How many items match, across all pages."""


_CURSOR_SEPARATOR = "/"


@attrs.frozen
class InstanceCursor:
    """Where a page ends: the ``created_at`` and ``instance_id`` of its last row."""

    created_at: dt.datetime
    instance_id: str

    @classmethod
    def after(cls, instance: Instance) -> InstanceCursor:
        return cls(instance.created_at, instance.instance_id)

    def encode(self) -> str:
        """The cursor as text: ``<created_at, ISO 8601 UTC>/<instance_id>``."""
        when = self.created_at.astimezone(dt.timezone.utc).isoformat(timespec="microseconds")
        return f"{when}{_CURSOR_SEPARATOR}{self.instance_id}"

    @classmethod
    def decode(cls, text: str) -> InstanceCursor:
        """The cursor :meth:`encode` wrote; raises OperationRefused for other text."""
        when, separator, instance_id = text.partition(_CURSOR_SEPARATOR)
        try:
            created_at = dt.datetime.fromisoformat(when)
        except ValueError:
            created_at = None
        if not separator or not instance_id or created_at is None or created_at.tzinfo is None:
            raise errors.OperationRefused(
                f"not a page cursor: {text!r} (a cursor is the next_cursor of a page, "
                "such as 2026-01-31T12:00:00.000000+00:00/instance-id)"
            )
        return cls(created_at.astimezone(dt.timezone.utc), instance_id)


@attrs.frozen
class InstanceDetails:
    """An instance with what an operator looks at next to it."""

    instance: Instance
    pending_signal: Signal | None
    custom_signals: list[CustomSignal]
    recent_events: list[Event]
    """Newest first."""
    launch: Launch | None = None
    """How it is launched, for an instance started with ``runtara-core start``."""
    wait_reason: str | None = None
    """Why a started instance is not running yet (queue paused or full, a delay...)."""
    children: list[str] = attrs.field(factory=list)
    """The ids of the instances it started as its children (``start_child``)."""


class _Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Any = _Unchanged()
"""Marks a column an :class:`InstanceUpdate` leaves as it is."""


def _changes(update: Any, names: tuple[str, ...]) -> dict[str, Any]:
    # Called on every request: plain getattr over the field names is several
    # times cheaper than attrs.asdict.
    return {name: value for name in names if (value := getattr(update, name)) is not UNCHANGED}


@attrs.frozen
class InstanceUpdate:
    """The columns one update writes; every field left UNCHANGED is not touched."""

    status: InstanceStatus = UNCHANGED
    checkpoint_id: str | None = UNCHANGED
    started_at: dt.datetime | None = UNCHANGED
    finished_at: dt.datetime | None = UNCHANGED
    output: bytes | None = UNCHANGED
    error: str | None = UNCHANGED
    sleep_until: dt.datetime | None = UNCHANGED
    last_activity_at: dt.datetime | None = UNCHANGED
    wake_claimed_until: dt.datetime | None = UNCHANGED
    registration: int = UNCHANGED

    def changes(self) -> dict[str, Any]:
        """The fields to write, by column name."""
        return _changes(self, _UPDATE_FIELDS)


_UPDATE_FIELDS = tuple(field.name for field in attrs.fields(InstanceUpdate))


@attrs.frozen
class Launch:
    """How an instance started by ``runtara-core start`` is launched, and who runs it.

    The launchers of every server sharing the store coordinate through these
    rows alone (the protocol is in :mod:`runtara.storage.launches`): a launcher
    claims a due row for a lease, spawns the process, renews the lease while it
    watches the process, and records how it ended.
    """

    instance_id: str
    spec: str
    """The launch specification as JSON (see runtara.launcher.spec)."""
    input: bytes | None
    """What the instance was started with; handed to every attempt."""
    max_failures: int
    """Failed attempts in a row without progress after which the instance is failed."""
    attempt: int = 0
    """Launches so far: the number of the current (or last) attempt."""
    failures: int = 0
    """Failed attempts in a row that saved no new checkpoint (an attempt that saved
    one, or ended suspended, resets it)."""
    resumed_from: str | None = None
    """The instance's last checkpoint when the current attempt was claimed: another
    one at its end means the attempt made progress."""
    launched_at: dt.datetime | None = None
    """When the current attempt's process was started."""
    next_launch_at: dt.datetime | None = None
    """When the instance is due to be launched (again); None while it runs or waits
    for a resume, and once it is finished."""
    claimed_by: str | None = None
    """The launcher (one per server) watching its process."""
    claimed_until: dt.datetime | None = None
    """Until when that claim holds unless renewed."""
    pid: int | None = None
    pid_started: int | None = None
    """The process's start time, which tells it from a later process with the same pid."""
    host: str | None = None
    registration: int | None = None
    """The instance's registration number when the attempt was claimed: a later
    number than the next one means another process took the instance over."""
    stop_deadline: dt.datetime | None = None
    """Set by ``runtara-core stop``: past it, the process is terminated."""
    last_exit: str | None = None
    """How the last attempt ended."""
    queue: str = "default"
    """The queue whose limits decide when it may be claimed."""
    key: str | None = None
    """Its concurrency key within the queue (the queue's ``per_key`` limit counts it)."""
    priority: int = 0
    """Higher is claimed first within its queue."""
    origin_instance: str | None = None
    """Set on a fork (``runtara-core fork``): the instance it was forked from."""
    origin_checkpoint: str | None = None
    """Set on a fork: the checkpoint of ``origin_instance`` it runs again from."""
    parent_instance: str | None = None
    """Set on a child instance (the SDK's ``start_child``): the instance that started it."""
    on_parent_cancel: str | None = None
    """Set on a child: ``cancel`` (stopped when its parent is) or ``abandon`` (left running)."""

    @property
    def holder(self) -> LaunchHolder:
        """Who holds it now, as a compare-and-set of the launch expects it."""
        return LaunchHolder(self.claimed_by, self.attempt)


@attrs.frozen
class LaunchHolder:
    """The launcher holding a launch (None: none) and the attempt it is on: an update
    made on this condition fails if anyone moved the launch on since it was read."""

    claimed_by: str | None
    attempt: int


@attrs.frozen
class LaunchUpdate:
    """The columns of a launch one update writes; every field left UNCHANGED is not touched."""

    spec: str = UNCHANGED
    input: bytes | None = UNCHANGED
    attempt: int = UNCHANGED
    failures: int = UNCHANGED
    resumed_from: str | None = UNCHANGED
    launched_at: dt.datetime | None = UNCHANGED
    next_launch_at: dt.datetime | None = UNCHANGED
    claimed_by: str | None = UNCHANGED
    claimed_until: dt.datetime | None = UNCHANGED
    pid: int | None = UNCHANGED
    pid_started: int | None = UNCHANGED
    host: str | None = UNCHANGED
    registration: int | None = UNCHANGED
    stop_deadline: dt.datetime | None = UNCHANGED
    last_exit: str | None = UNCHANGED

    def changes(self) -> dict[str, Any]:
        """The fields to write, by column name."""
        return _changes(self, _LAUNCH_FIELDS)


_LAUNCH_FIELDS = tuple(field.name for field in attrs.fields(LaunchUpdate))

DEFAULT_QUEUE = "default"


@attrs.frozen
class Queue:
    """A queue's limits on claiming its launches; None is no limit. A queue without
    a row has none."""

    name: str
    concurrency: int | None = None
    """At most this many of its launches claimed (being started or running) at once."""
    per_key: int | None = None
    """At most this many claimed at once per concurrency key."""
    rate_limit: int | None = None
    """At most this many claims in any ``rate_period`` seconds."""
    rate_period: float | None = None
    paused: bool = False
    """Nothing more of it is claimed (running ones are untouched)."""


@attrs.frozen
class QueueFigures:
    """How many of a queue's launches are claimed, due and waiting for a time."""

    running: int = 0
    due: int = 0
    later: int = 0


@attrs.frozen
class QueueView:
    """A queue's limits and how many of its launches are claimed, due and waiting."""

    queue: Queue
    figures: QueueFigures


@attrs.frozen
class Schedule:
    """A schedule: at each tick it starts one instance of its launch specification."""

    name: str
    cron: str | None
    """A cron expression (in ``timezone``), or None for a fixed interval."""
    every: float | None
    """Seconds between ticks, counted from its creation, when there is no cron."""
    timezone: str
    overlap: str
    """What a tick does while the previous tick's instance is not finished: ``skip``,
    ``allow`` or ``cancel-previous``."""
    catch_up: str
    """Which ticks missed while no server ran are started: ``none``, ``one`` (the
    latest) or ``all``."""
    tenant_id: str
    spec: str
    input: bytes | None
    created_at: dt.datetime
    next_tick_at: dt.datetime
    paused: bool = False
    last_tick_at: dt.datetime | None = None
    last_instance_id: str | None = None
    ticks: int = 0
    """Instances started."""
    skipped: int = 0
    """Ticks that started nothing (overlap, or missed and not caught up)."""
