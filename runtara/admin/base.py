"""What operators can do with instances, wherever the instances are.

:class:`Admin` is the one interface of the operator tools;
:class:`runtara.admin.local.LocalAdmin` carries it out directly on a storage
driver and :class:`runtara.admin.remote.RemoteAdmin` through a running
server's management service. Both return the same records and raise the same
errors: :class:`runtara.errors.OperationRefused` for an unknown or finished
instance, :class:`runtara.errors.StorageError` or
:class:`runtara.errors.ClientError` when the storage or the server fails.

Each operation is declared once in :mod:`runtara.handlers.management`; a
method here names it and its arguments, and the subclass's ``_perform``
carries it out. Health, counters and closing differ by nature and are the
subclasses' own.
"""

from __future__ import annotations

import abc
import datetime as dt
from typing import Any

from runtara import records
from runtara.handlers import management
from runtara.launcher.spec import LaunchSpec
from runtara.protocol import management_pb2 as mpb
from runtara.records import UNCHANGED
from runtara.storage.listing import InstancePage


def _arguments(method_locals: dict[str, Any]) -> dict[str, Any]:
    """A method's arguments by name, from its ``locals()`` taken first thing."""
    return {name: value for name, value in method_locals.items() if name != "self"}


class Admin(abc.ABC):
    def __enter__(self) -> Admin:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @abc.abstractmethod
    def _perform(self, operator: management.Operator, arguments: dict[str, Any]) -> Any:
        """Carry out one operator operation with these arguments; its result."""

    @abc.abstractmethod
    def describe(self) -> str:
        """What the tool works on, for messages ("storage sqlite ...", "server HOST:PORT")."""

    @abc.abstractmethod
    def health(self) -> str:
        """One line saying it answers and accepts writes; raises StorageError or
        ClientError (with the reason) when not."""

    @abc.abstractmethod
    def stats(self) -> dict[str, float]:
        """The running server's counters by name (GetStats); raises
        OperationRefused without a server."""

    def send_signal(
        self, instance_id: str, signal_type: records.SignalType, payload: bytes
    ) -> None:
        """Make this the instance's pending signal (a live instance only)."""
        return self._perform(management.SEND_SIGNAL, _arguments(locals()))

    def send_custom_signal(self, instance_id: str, checkpoint_id: str, payload: bytes) -> None:
        """Leave a signal for one checkpoint id of a live instance, taken once."""
        return self._perform(management.SEND_CUSTOM_SIGNAL, _arguments(locals()))

    def list_instances(
        self,
        *,
        tenant_id: str | None = None,
        status: records.InstanceStatus | None = None,
        limit: int = 100,
        offset: int = 0,
        after: str | None = None,
        before: str | None = None,
        count_at_most: int | None = None,
    ) -> InstancePage:
        """Instances, newest first: the page after the cursor ``after`` (a page's
        ``next_cursor``), or before the cursor ``before`` (its ``previous_cursor``),
        or ``offset`` rows in; its total counted up to ``count_at_most`` when given."""
        return self._perform(management.LIST_INSTANCES, _arguments(locals()))

    def instance_details(
        self, instance_id: str, recent_events: int = 10
    ) -> records.InstanceDetails | None:
        """The instance with its signals and latest events, or None."""
        return self._perform(management.GET_INSTANCE, _arguments(locals()))

    def list_checkpoints(
        self,
        instance_id: str,
        checkpoint_filter: records.CheckpointFilter = records.ALL_CHECKPOINTS,
        *,
        limit: int = 100,
        offset: int = 0,
    ) -> records.Page[records.CheckpointInfo]:
        """The instance's checkpoints, newest first (OperationRefused if it is unknown)."""
        return self._perform(management.LIST_CHECKPOINTS, _arguments(locals()))

    def get_checkpoint(self, instance_id: str, checkpoint_id: str) -> records.Checkpoint | None:
        """One checkpoint with its state (OperationRefused if the instance is unknown)."""
        return self._perform(management.GET_CHECKPOINT, _arguments(locals()))

    def list_events(
        self,
        instance_id: str,
        event_filter: records.EventFilter = records.ALL_EVENTS,
        *,
        limit: int = 100,
        offset: int = 0,
    ) -> records.Page[records.Event]:
        """The instance's events, newest first (OperationRefused if it is unknown)."""
        return self._perform(management.LIST_EVENTS, _arguments(locals()))

    def start_instance(
        self,
        instance_id: str,
        tenant_id: str,
        spec: LaunchSpec,
        payload: bytes | None,
        *,
        replace: bool = False,
        not_before: dt.datetime | None = None,
        delay: float | None = None,
    ) -> bool:
        """Store a pending instance with its launch specification; a launcher starts it
        at ``not_before`` or ``delay`` seconds from now (at once if neither), as its
        queue's limits allow.

        Returns True if the id exists already with the same tenant, specification
        and input (nothing changes). OperationRefused for any other existing id
        (unless it is finished and ``replace``).
        """
        return self._perform(management.START_INSTANCE, _arguments(locals()))

    def retry_instance(
        self, instance_id: str, env: dict[str, str], payload: bytes | None
    ) -> str | None:
        """Make a failed or cancelled instance go on from its last checkpoint, with a
        fresh count of failures; ``env`` set on top of its launch environment and
        ``payload`` (unless None) as its new input. Returns the checkpoint it goes on
        from (None: it starts over). OperationRefused when it cannot be retried."""
        return self._perform(management.RETRY_INSTANCE, _arguments(locals()))

    def fork_instance(
        self,
        instance_id: str,
        checkpoint_id: str | None,
        new_id: str | None,
        env: dict[str, str],
        payload: bytes | None,
    ) -> tuple[str, str]:
        """Store a new instance that runs again from ``instance_id``'s checkpoint
        ``checkpoint_id`` (None: its latest) with copies of the checkpoints saved up
        to it, launched as ``instance_id`` is (``env`` set on top of its launch
        environment, ``payload`` unless None as its input), due at once; the
        original is not changed. ``new_id`` None: ``<instance_id>-fork-<8 hex>``.
        Returns the new id and the checkpoint forked from. OperationRefused for an
        unknown instance or checkpoint, one without a launch, an existing
        ``new_id``."""
        return self._perform(management.FORK_INSTANCE, _arguments(locals()))

    def stop_instance(self, instance_id: str, grace: float) -> bool:
        """Send cancel, and give the instance ``grace`` seconds to end by itself, past
        which a launcher terminates its process. True if a launcher watches it."""
        return self._perform(management.STOP_INSTANCE, _arguments(locals()))

    def give_up_stop(self, instance_id: str, reason: str) -> bool:
        """Record ``cancelled`` (with ``reason``) for an instance a stop did not end;
        False if it ended meanwhile."""
        return self._perform(
            management.STOP_INSTANCE, {"instance_id": instance_id, "give_up": reason}
        )

    def read_log(self, instance_id: str, stream: str, offset: int) -> tuple[bytes, int]:
        """Output of a launched instance (``stdout`` or ``stderr``) from ``offset``,
        and the offset after it."""
        return self._perform(management.READ_LOG, _arguments(locals()))

    # --- queues -------------------------------------------------------------------

    def set_queue(
        self,
        name: str,
        *,
        concurrency: int | None = UNCHANGED,
        per_key: int | None = UNCHANGED,
        rate: tuple[int, float] | None = UNCHANGED,
        paused: bool = UNCHANGED,
    ) -> records.Queue:
        """Change the given limits of a queue (None removes one; ``rate`` is (starts,
        seconds)) or pause or resume it; returns the queue as it now is."""
        return self._perform(management.SET_QUEUE, _arguments(locals()))

    def list_queues(self) -> list[records.QueueView]:
        """Every queue with limits or launches (the default one always), by name."""
        return self._perform(management.LIST_QUEUES, _arguments(locals()))

    # --- schedules ----------------------------------------------------------------

    def add_schedule(
        self,
        name: str,
        *,
        cron: str | None,
        every: float | None,
        timezone: str,
        overlap: str,
        catch_up: str,
        tenant_id: str,
        spec: LaunchSpec,
        payload: bytes | None,
        replace: bool = False,
    ) -> records.Schedule:
        """Create a schedule (replace one of that name with ``replace``)."""
        return self._perform(management.ADD_SCHEDULE, _arguments(locals()))

    def list_schedules(self) -> list[records.Schedule]:
        """Every schedule, by name."""
        return self._perform(management.LIST_SCHEDULES, _arguments(locals()))

    def pause_schedule(self, name: str, paused: bool) -> records.Schedule:
        """Pause or resume a schedule; returns it as it now is."""
        action = mpb.SCHEDULE_PAUSE if paused else mpb.SCHEDULE_RESUME
        return self._perform(management.CHANGE_SCHEDULE, {"name": name, "action": action})

    def remove_schedule(self, name: str) -> None:
        """Remove a schedule (OperationRefused if unknown); its instances stay."""
        return self._perform(
            management.CHANGE_SCHEDULE, {"name": name, "action": mpb.SCHEDULE_REMOVE}
        )

    def trigger_schedule(self, name: str) -> str:
        """Start one instance of the schedule now; returns its id."""
        return self._perform(
            management.CHANGE_SCHEDULE, {"name": name, "action": mpb.SCHEDULE_TRIGGER}
        )

    @abc.abstractmethod
    def close(self) -> None:
        """Release the storage or the connection (idempotent)."""
