"""The transaction of the storage driver contract: what a driver's ``run`` hands
its work (see :mod:`runtara.storage.base`)."""

from __future__ import annotations

import abc
import datetime as dt

from runtara import records
from runtara.records import InstanceCursor

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


class Transaction(abc.ABC):
    """Reads and writes inside one transaction of :meth:`StorageDriver.run`.

    In a write transaction :meth:`get_instance` locks the instance until the
    transaction ends, so two operations on one instance never interleave; the
    handlers call it before touching anything else of that instance.

    Inserting anything (checkpoint, retry, event, signal) for an instance that
    does not exist raises :class:`runtara.errors.StorageError`; updates,
    acknowledgements, takes and reads of an unknown instance change nothing and
    return None, False, 0 or an empty list.
    """

    # --- instances ------------------------------------------------------------

    @abc.abstractmethod
    def create_instance(self, instance_id: str, tenant_id: str, now: dt.datetime) -> bool:
        """Insert a ``pending`` instance created at ``now`` unless the id exists.

        Returns True if this call created it. Concurrent creations of one id from
        many threads or processes create it once; the others return False.
        """

    @abc.abstractmethod
    def get_instance(self, instance_id: str) -> records.Instance | None:
        """The instance, or None. Locks it until the end of a write transaction."""

    @abc.abstractmethod
    def update_instance(self, instance_id: str, update: records.InstanceUpdate) -> None:
        """Write the columns named by ``update``; no effect on an unknown id."""

    @abc.abstractmethod
    def list_instances(
        self,
        *,
        tenant_id: str | None = None,
        status: records.InstanceStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[records.Instance]:
        """Instances matching every given filter, newest ``created_at`` first
        (ties broken by ``instance_id``)."""

    @abc.abstractmethod
    def count_instances(
        self, *, tenant_id: str | None = None, status: records.InstanceStatus | None = None
    ) -> int:
        """How many instances :meth:`list_instances` would page through."""

    def list_instances_after(
        self,
        *,
        tenant_id: str | None = None,
        status: records.InstanceStatus | None = None,
        limit: int = 100,
        after: InstanceCursor | None = None,
        before: InstanceCursor | None = None,
    ) -> list[records.Instance]:
        """The first ``limit`` instances in :meth:`list_instances`'s order that
        come after the cursor ``after`` (from the start when None); with
        ``before`` instead, the last ``limit`` that come before that cursor,
        still in the list's order.

        This default filters the whole list; a driver with an index on the
        order replaces it with a read that starts at the cursor."""
        found = self.list_instances(tenant_id=tenant_id, status=status, limit=2**31 - 1)

        def position(instance: records.Instance | InstanceCursor) -> tuple[int, str]:
            # the list's order: newest first (in whole microseconds), then by id
            age = (instance.created_at - _EPOCH) // dt.timedelta(microseconds=1)
            return (-age, instance.instance_id)

        if after is not None:
            mark = position(after)
            found = [instance for instance in found if position(instance) > mark]
        if before is not None:
            mark = position(before)
            found = [instance for instance in found if position(instance) < mark]
            return found[-limit:] if limit else []
        return found[:limit]

    def count_instances_up_to(
        self,
        at_most: int,
        *,
        tenant_id: str | None = None,
        status: records.InstanceStatus | None = None,
    ) -> int:
        """:meth:`count_instances`, counting no further than ``at_most``.

        A driver replaces this default with a count that stops there."""
        return min(at_most, self.count_instances(tenant_id=tenant_id, status=status))

    @abc.abstractmethod
    def list_due_sleepers(self, *, due_before: dt.datetime, limit: int) -> list[records.Instance]:
        """Sleepers nothing launches: status ``suspended``, ``sleep_until`` at or before
        ``due_before``, and no launch. Oldest ``sleep_until`` first, at most ``limit``."""

    @abc.abstractmethod
    def list_stale_instances(self, cutoff: dt.datetime, limit: int) -> list[records.Instance]:
        """Running instances with no activity since before ``cutoff``: their
        ``last_activity_at`` (or, if never set, ``started_at``, else
        ``created_at``) is before it. Oldest activity first, at most ``limit``."""

    @abc.abstractmethod
    def list_finished_before(self, cutoff: dt.datetime, limit: int) -> list[str]:
        """Ids of completed, failed or cancelled instances whose ``finished_at`` is
        before ``cutoff``, oldest first, at most ``limit``."""

    @abc.abstractmethod
    def delete_instance(self, instance_id: str) -> bool:
        """Delete the instance with its checkpoints, events and signals.

        Returns False if there was no such instance.
        """

    # --- checkpoints ----------------------------------------------------------

    def delete_finished_before(self, cutoff: dt.datetime, limit: int) -> list[str]:
        """Delete the first ``limit`` of :meth:`list_finished_before` that are still
        finished before ``cutoff`` (each with what it owns); return their ids.

        A driver may replace this default with one statement."""
        gone = []
        for instance_id in self.list_finished_before(cutoff, limit):
            instance = self.get_instance(instance_id)  # locked: checked again
            if (
                instance is not None
                and instance.status.is_terminal
                and instance.finished_at is not None
                and instance.finished_at < cutoff
                and self.delete_instance(instance_id)
            ):
                gone.append(instance_id)
        return gone

    @abc.abstractmethod
    def insert_checkpoint(
        self, instance_id: str, checkpoint_id: str, state: bytes, now: dt.datetime
    ) -> bool:
        """Store ``state`` under (instance, checkpoint id) unless one is stored already.

        Returns True if this call stored it. A stored state is never replaced: when
        many callers race on one new id, across threads or processes, exactly one
        returns True and every caller's later :meth:`get_checkpoint` sees that state.
        """

    @abc.abstractmethod
    def get_checkpoint(self, instance_id: str, checkpoint_id: str) -> records.Checkpoint | None:
        """The checkpoint of this instance with this id, or None (ids are per instance)."""

    @abc.abstractmethod
    def save_retry_attempt(
        self,
        instance_id: str,
        checkpoint_id: str,
        attempt: int,
        error_message: str | None,
        now: dt.datetime,
    ) -> None:
        """Record a retry as the checkpoint ``<checkpoint_id>::retry::<attempt>``.

        Its state is the UTF-8 error message (empty if none). Recording the same
        attempt again replaces that row's state and time.
        """

    @abc.abstractmethod
    def list_checkpoints(
        self,
        instance_id: str,
        checkpoint_filter: records.CheckpointFilter = records.ALL_CHECKPOINTS,
        *,
        limit: int = 100,
        offset: int = 0,
    ) -> list[records.CheckpointInfo]:
        """The instance's checkpoints matching the filter, newest first (ties: highest
        insertion first)."""

    @abc.abstractmethod
    def count_checkpoints(
        self,
        instance_id: str,
        checkpoint_filter: records.CheckpointFilter = records.ALL_CHECKPOINTS,
    ) -> int:
        """How many checkpoints :meth:`list_checkpoints` would page through."""

    # --- events ---------------------------------------------------------------

    @abc.abstractmethod
    def insert_event(self, event: records.Event) -> int:
        """Append an event (its ``id`` is ignored) and return the id it was given.

        Ids increase in insertion order within an instance.
        """

    @abc.abstractmethod
    def list_events(
        self,
        instance_id: str,
        event_filter: records.EventFilter = records.ALL_EVENTS,
        *,
        limit: int = 100,
        offset: int = 0,
    ) -> list[records.Event]:
        """The instance's events matching the filter, newest first (ties: highest id)."""

    @abc.abstractmethod
    def count_events(
        self, instance_id: str, event_filter: records.EventFilter = records.ALL_EVENTS
    ) -> int:
        """How many events :meth:`list_events` would page through."""

    # --- signals --------------------------------------------------------------

    @abc.abstractmethod
    def put_signal(
        self,
        instance_id: str,
        signal_type: records.SignalType,
        payload: bytes,
        now: dt.datetime,
    ) -> None:
        """Make this the instance's pending signal, replacing any earlier one
        (acknowledged or not)."""

    @abc.abstractmethod
    def get_pending_signal(self, instance_id: str) -> records.Signal | None:
        """The instance's signal if it has not been acknowledged, else None."""

    @abc.abstractmethod
    def acknowledge_signal(
        self, instance_id: str, signal_type: records.SignalType, now: dt.datetime
    ) -> bool:
        """Mark the pending signal acknowledged if it is of ``signal_type``.

        Returns True if a signal was marked. A signal of another type (one that
        replaced the acknowledged one) stays pending.
        """

    @abc.abstractmethod
    def put_custom_signal(
        self, instance_id: str, checkpoint_id: str, payload: bytes, now: dt.datetime
    ) -> None:
        """Store a signal for one checkpoint id, replacing an untaken one for that id."""

    @abc.abstractmethod
    def take_custom_signal(
        self, instance_id: str, checkpoint_id: str
    ) -> records.CustomSignal | None:
        """Remove and return the custom signal for this checkpoint id.

        When many callers race, across threads or processes, exactly one gets it.
        """

    @abc.abstractmethod
    def list_custom_signals(self, instance_id: str) -> list[records.CustomSignal]:
        """The instance's untaken custom signals, oldest first."""

    # --- launches -------------------------------------------------------------
    # The launch protocol (runtara.storage.launches) moves a launch from state to
    # state with update_launch conditioned on its holder: one compare-and-set each.

    @abc.abstractmethod
    def insert_launch(self, launch: records.Launch) -> None:
        """Store the launch of an existing instance (StorageError for an unknown one
        or one that has a launch already)."""

    @abc.abstractmethod
    def get_launch(self, instance_id: str) -> records.Launch | None:
        """The instance's launch, or None (an instance not started with ``start``)."""

    @abc.abstractmethod
    def update_launch(
        self,
        instance_id: str,
        update: records.LaunchUpdate,
        *,
        held_by: records.LaunchHolder | None = None,
    ) -> bool:
        """Write the columns named by ``update``, in one statement; with ``held_by``,
        only if the launch's ``claimed_by`` (None matching None) and ``attempt`` are
        still those. Returns True if the launch was written."""

    @abc.abstractmethod
    def list_due_launches(self, *, now: dt.datetime, limit: int) -> list[str]:
        """Ids of due launches: ``next_launch_at`` at or before ``now`` and no claim in
        force (``claimed_until`` unset or at or before ``now``); earliest due first, at
        most ``limit``. A store with row locks locks each returned instance's row for
        the rest of the transaction, skipping rows another transaction holds (instance
        rows are locked before launch rows everywhere)."""

    @abc.abstractmethod
    def list_lapsed_launches(
        self, *, now: dt.datetime, due_before: dt.datetime, limit: int
    ) -> list[records.Launch]:
        """Launches that nobody watches: claimed, with the claim run out (at or before
        ``now``), whatever the instance's status; or unclaimed and not due while the
        instance is pending or running, or sleeps with ``sleep_until`` at or before
        ``due_before``. By instance id, at most ``limit``."""

    @abc.abstractmethod
    def list_claimed_launches(self, *, claimed_by: str, limit: int) -> list[records.Launch]:
        """Launches ``claimed_by`` holds, whatever their claim's end; by instance id, at
        most ``limit``."""

    @abc.abstractmethod
    def list_children(self, parent_instance: str) -> list[records.Launch]:
        """The launches of the instances ``parent_instance`` started as its children
        (their ``parent_instance``), by instance id."""

    # --- queues -----------------------------------------------------------------
    # A claim that a queue's limits decide is taken with every queue row locked
    # (lock_queues, in name order, before any instance row): the launchers of
    # several servers decide such claims one at a time.

    @abc.abstractmethod
    def get_queue(self, name: str, *, lock: bool = False) -> records.Queue | None:
        """The queue's limits (None: it has no row, so no limits); ``lock`` locks the
        row for the rest of the transaction."""

    @abc.abstractmethod
    def list_queues(self) -> list[records.Queue]:
        """Every queue with a row, by name."""

    @abc.abstractmethod
    def lock_queues(self) -> None:
        """Lock every queue row, in name order, until the transaction ends (a store
        whose write transactions run one at a time does nothing)."""

    @abc.abstractmethod
    def put_queue(self, queue: records.Queue) -> None:
        """Create or replace the queue's row."""

    @abc.abstractmethod
    def count_claimed(self, queue: str, key: str | None = None) -> int:
        """Launches of ``queue`` (of concurrency key ``key`` if given) with a claimant."""

    @abc.abstractmethod
    def record_queue_start(self, queue: str, now: dt.datetime, expires_at: dt.datetime) -> None:
        """Remember a claim of a rate-limited queue until ``expires_at`` (and forget
        the queue's claims that expired at or before ``now``)."""

    @abc.abstractmethod
    def count_queue_starts(self, queue: str, now: dt.datetime) -> int:
        """Claims of ``queue`` remembered past ``now``."""

    @abc.abstractmethod
    def queue_figures(self, now: dt.datetime) -> dict[str, records.QueueFigures]:
        """Per queue that has launches claimed or due: how many are claimed, due at
        ``now``, due later."""

    # --- schedules ----------------------------------------------------------------

    @abc.abstractmethod
    def get_schedule(self, name: str, *, lock: bool = False) -> records.Schedule | None:
        """The schedule, or None; ``lock`` locks its row for the rest of the transaction."""

    @abc.abstractmethod
    def list_schedules(self) -> list[records.Schedule]:
        """Every schedule, by name."""

    @abc.abstractmethod
    def list_due_schedules(self, *, now: dt.datetime, limit: int) -> list[str]:
        """Names of schedules not paused whose next tick is at or before ``now``, the
        earliest first, at most ``limit``; a store with row locks locks their rows,
        skipping those another transaction holds."""

    @abc.abstractmethod
    def put_schedule(self, schedule: records.Schedule) -> None:
        """Create or replace the schedule's row."""

    @abc.abstractmethod
    def delete_schedule(self, name: str) -> bool:
        """Remove the schedule; False if there was none."""
