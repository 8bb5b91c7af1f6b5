"""The launch protocol: starting, claiming, watching and relaunching instances.

Every launcher (one per server) coordinates with the others only through the
store. A launch row (:class:`runtara.records.Launch`) is always in one of these
states, read from its columns and its instance's status:

=========  ==========  ============  ====  ==============  =========================
state      claimed_by  claim         pid   next_launch_at  instance
=========  ==========  ============  ====  ==============  =========================
due        none        -             none  now or earlier  live
waiting    none        -             none  later or none   pending (delayed), suspended
claimed    L           in force      none  none            live
running    L           in force      set   none            live
lapsed     L           run out       any   none            live
unwatched  none        -             any   none            pending, running, or a due
                                                           sleeper
done       none        -             none  none            completed, failed, cancelled
=========  ==========  ============  ====  ==============  =========================

Transitions. Each is one function below, one transaction, and one
compare-and-set of the launch row: ``update_launch(..., held_by=holder)``
writes only if nobody moved the launch on (its ``claimed_by`` and ``attempt``)
since it was read. Every transition first locks the instance's row
(``get_instance``): instance rows are locked before launch rows, everywhere.
A claim locks every queue row first (``lock_queues``), so the claims that a
queue's limits decide are taken one launcher at a time.

==============  ===============================  =============================  ==========
transition      from -> to                       who                            function
==============  ===============================  =============================  ==========
start           (none) -> due, or waiting        an operator, a schedule        start_instance
                until its not-before time
wake            (none) -> due                    a launcher with a wake command wake_sleepers
claim           due -> claimed                   launcher L, as the queue's     claim
                                                 limits allow
launched        claimed -> running               L                              launched
renew           claimed, running -> same         L, for a process it watches    renew
exited          claimed, running -> due,         L                              exited
                waiting, done, unwatched
unlaunchable    claimed -> done (failed)         L, the spec cannot be run      fail_unlaunchable
adopt           lapsed -> running (by L)         L, the process lives here      adopt
lost            lapsed, unwatched -> due, done   L, the process is gone/silent  relaunch_lost
unstarted       lapsed (no pid) -> due, or       L                              release_unstarted
                unwatched if it registered
woken           unwatched sleeper -> due         L                              wake_unwatched
resume          waiting (paused) -> due          an operator's resume           resume
stop            any live -> deadline set,        an operator                    request_stop
                or done when nothing runs it
stop unanswered any live -> done (cancelled);    an operator, past the grace    cancel_unanswered
                a claim in force is kept
retry           done (failed, cancelled) -> due  an operator                    retry
fork            (none) -> due, a new instance    an operator                    fork
                with copies of another's
                checkpoints
start child     (none) -> due, a child naming    a workflow (its child          start_child
                its parent                       credential)
==============  ===============================  =============================  ==========

A stop (``request_stop``, ``cancel_unanswered``, a cancel signal) also stops
the live children whose ``on_parent_cancel`` is ``cancel``, recursively
(``stop_children``); ``abandon`` ones are left running.

The restart policy counts failures, not launches: an attempt that ends with
its instance finished or cancelled, or suspended by the attempt's own process
(it registered), is not a failure; a failed
attempt that saved a new checkpoint (progress) resets the count of failures
in a row, and with it the back-off; ``max_failures`` failed attempts in a row
without progress fail the instance.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import secrets
from collections.abc import Callable

import attrs

from runtara import errors, records
from runtara.records import EventType, InstanceStatus, InstanceUpdate, LaunchUpdate
from runtara.storage.transaction import Transaction

STOP_GRACE = dt.timedelta(seconds=30)
"""The grace of a stop a cancel makes without one (a child's, a cancel signal's)."""

RELEASED = LaunchUpdate(claimed_by=None, claimed_until=None, pid=None, pid_started=None, host=None)
"""A launch no launcher watches any more."""


class Outcome(str, enum.Enum):
    """What follows the end of an attempt."""

    FINISHED = "finished"
    """The instance reached a final status."""
    SUSPENDED = "suspended"
    """Paused, or sleeping until it is due again."""
    TAKEN_OVER = "taken over"
    """Another process registered the instance since."""
    STOPPED = "stopped"
    """A stop ran out of grace: the instance is now cancelled."""
    FAILED = "failed"
    """Too many failures in a row: the instance is failed, saying how the last ended."""
    RELAUNCH = "relaunch"
    """Due again after the back-off."""
    STALE = "stale"
    """This launcher no longer held the launch: nothing was recorded."""


@attrs.frozen
class Backoff:
    """How long a relaunch waits: ``first`` after a failure that followed progress
    or the first failure, doubling with each further failure in a row, at most
    ``longest``, times ``jitter`` (drawn once by the caller, so that a transaction
    run again writes the same time)."""

    first: float
    longest: float
    jitter: float = 1.0

    def after(self, failures: int) -> dt.timedelta:
        seconds = min(self.longest, self.first * 2 ** max(0, failures - 1))
        return dt.timedelta(seconds=seconds * self.jitter)


def _event(tx: Transaction, instance_id: str, kind: EventType, now: dt.datetime, **facts):
    tx.insert_event(
        records.Event(
            instance_id=instance_id,
            event_type=kind,
            created_at=now,
            payload=json.dumps(facts, sort_keys=True).encode(),
        )
    )


def _release(**changes) -> LaunchUpdate:
    return LaunchUpdate(**{**RELEASED.changes(), **changes})


def _locked(
    tx: Transaction, instance_id: str
) -> tuple[records.Instance | None, records.Launch | None]:
    """The instance (its row locked first) and its launch."""
    instance = tx.get_instance(instance_id)
    return instance, None if instance is None else tx.get_launch(instance_id)


def _launched(
    tx: Transaction, instance_id: str, why_needed: str
) -> tuple[records.Instance, records.Launch]:
    """The instance and its launch, locked; refused when either is missing."""
    instance, launch = _locked(tx, instance_id)
    if instance is None:
        raise errors.OperationRefused(f"Instance '{instance_id}' not found")
    if launch is None:
        raise errors.OperationRefused(
            f"Instance '{instance_id}' was not started with `runtara-core start`: {why_needed}"
        )
    return instance, launch


# --- operators ------------------------------------------------------------------


def start_instance(
    tx: Transaction,
    instance_id: str,
    tenant_id: str,
    spec: str,
    payload: bytes | None,
    max_failures: int,
    now: dt.datetime,
    *,
    replace: bool = False,
    queue: str = records.DEFAULT_QUEUE,
    key: str | None = None,
    priority: int = 0,
    not_before: dt.datetime | None = None,
    parent: str | None = None,
    on_parent_cancel: str | None = None,
) -> bool:
    """Store a pending instance with its launch specification, due at ``not_before``
    (at once if None or past), in ``queue`` with concurrency ``key`` and ``priority``;
    a child instance names its ``parent`` and its ``on_parent_cancel`` policy.

    Starting again an id that exists with the same tenant, specification and
    input changes nothing and returns True (deduplicated); otherwise False. Any
    other existing id is refused, unless it is finished and ``replace`` is set:
    then the old instance goes, with everything it owned (to go on from its
    checkpoints instead, see :func:`retry`).
    """

    def same_start(existing: records.Instance) -> bool:
        launch = tx.get_launch(instance_id)
        return (
            launch is not None
            and existing.tenant_id == tenant_id
            and launch.spec == spec
            and launch.input == payload
            and launch.parent_instance == parent
        )

    existing = tx.get_instance(instance_id)
    if existing is not None:
        launch = tx.get_launch(instance_id)
        if not replace and same_start(existing):
            return True
        if not existing.status.is_terminal:
            raise errors.OperationRefused(
                f"Instance '{instance_id}' already exists and is {existing.status.value}"
                + ("" if launch is None else " (with another launch specification or input)")
            )
        if not replace:
            raise errors.OperationRefused(
                f"Instance '{instance_id}' already exists ({existing.status.value}); "
                "use --replace to start it afresh, or `retry` to go on from its checkpoints"
            )
        tx.delete_instance(instance_id)
    if not tx.create_instance(instance_id, tenant_id, now):
        # Another start of this id committed meanwhile: the same start is answered alike.
        existing = tx.get_instance(instance_id)
        if existing is not None and not replace and same_start(existing):
            return True
        raise errors.OperationRefused(f"Instance '{instance_id}' was just created by another call")
    due = now if not_before is None or not_before < now else not_before
    tx.insert_launch(
        records.Launch(
            instance_id,
            spec,
            payload,
            max_failures,
            next_launch_at=due,
            queue=queue,
            key=key,
            priority=priority,
            parent_instance=parent,
            on_parent_cancel=on_parent_cancel if parent is not None else None,
        )
    )
    return False


CHILD_POLICIES = ("cancel", "abandon")
"""What a cancel of a child's parent does to it: stop it too, or leave it running."""


def start_child(
    tx: Transaction,
    parent_id: str,
    child_id: str,
    command: list[str] | None,
    env: dict[str, str],
    payload: bytes | None,
    on_parent_cancel: str,
    now: dt.datetime,
    *,
    checked: Callable[[str], str] = lambda spec: spec,
) -> bool:
    """Start ``child_id`` as a child of the live instance ``parent_id``: the parent's
    tenant and launch specification (``command`` replacing its command, ``env`` set
    on top of its environment, made valid by ``checked``), its input ``payload``.
    Starting the same child again with the same specification and input answers
    True (deduplicated), so a relaunched parent never starts one twice."""
    if on_parent_cancel not in CHILD_POLICIES:
        raise errors.OperationRefused(
            f"on_parent_cancel must be one of {', '.join(CHILD_POLICIES)}, not {on_parent_cancel!r}"
        )
    parent, launch = _launched(tx, parent_id, "no launch specification to start its children with")
    spec = json.loads(launch.spec)
    if command is not None:
        spec["command"] = list(command)
    if env:
        spec["env"] = {**spec.get("env", {}), **env}
    spec.pop("key", None)  # a parent waiting must not hold its children back
    child_spec = checked(json.dumps(spec, sort_keys=True))
    existing = tx.get_launch(child_id)
    if existing is not None and existing.parent_instance != parent_id:
        raise errors.OperationRefused(
            f"Instance '{child_id}' exists and is not a child of '{parent_id}'"
        )
    if parent.status.is_terminal and existing is None:
        raise errors.OperationRefused(f"Instance '{parent_id}' is {parent.status.value}")
    return start_instance(
        tx,
        child_id,
        parent.tenant_id,
        child_spec,
        payload,
        launch.max_failures,
        now,
        queue=launch.queue,
        priority=launch.priority,
        parent=parent_id,
        on_parent_cancel=on_parent_cancel,
    )


def stop_children(
    tx: Transaction, parent_id: str, grace: dt.timedelta, now: dt.datetime
) -> list[str]:
    """Stop (see :func:`request_stop`) the live children of ``parent_id`` whose policy
    is ``cancel``, and theirs in turn; ``abandon`` ones are left running. Returns
    the ids stopped."""
    stopped = []
    for child in tx.list_children(parent_id):
        if child.on_parent_cancel != "cancel":
            continue
        instance = tx.get_instance(child.instance_id)
        if instance is None or instance.status.is_terminal:
            continue
        request_stop(tx, child.instance_id, grace, now)
        stopped.append(child.instance_id)
    return stopped


def due_time(
    now: dt.datetime, not_before: dt.datetime | None, delay: float | None
) -> dt.datetime | None:
    """When a start asked to be launched: at ``not_before``, or ``delay`` seconds
    from ``now``; None for at once."""
    if not_before is not None:
        return not_before
    return None if delay is None else now + dt.timedelta(seconds=delay)


def retry(
    tx: Transaction,
    instance_id: str,
    now: dt.datetime,
    *,
    respec: Callable[[str], str] | None = None,
    payload: bytes | None = records.UNCHANGED,
) -> records.Instance:
    """Make a failed or cancelled instance go on from its last checkpoint: pending
    again, its checkpoints kept, a fresh count of failures, due at once.
    ``respec`` makes the new launch specification from the stored one (it may
    raise ConfigError); ``payload`` replaces the input. Records the event
    ``retried``; returns the instance as it was."""
    instance, launch = _locked(tx, instance_id)
    if instance is None:
        raise errors.OperationRefused(f"Instance '{instance_id}' not found")
    if instance.status not in (InstanceStatus.FAILED, InstanceStatus.CANCELLED):
        advice = (
            "; start it afresh with --replace"
            if instance.status is InstanceStatus.COMPLETED
            else ""
        )
        raise errors.OperationRefused(
            f"Instance '{instance_id}' is {instance.status.value}: only a failed or cancelled "
            f"instance can be retried{advice}"
        )
    if launch is None:
        raise errors.OperationRefused(
            f"Instance '{instance_id}' was not started with `runtara-core start`: "
            "no launch specification says how to run it again"
        )
    if launch.claimed_by is not None and launch.claimed_until > now:
        raise errors.OperationRefused(
            f"Instance '{instance_id}': its last process has not been seen to end yet "
            f"(watched by {launch.claimed_by}); try again in a few seconds"
        )
    # A claim that ran out is released too: its launcher stopped before it saw the
    # process end, and no launcher looks after a finished instance's launch.
    update = _release(failures=0, next_launch_at=now, stop_deadline=None)
    if respec is not None:
        update = attrs.evolve(update, spec=respec(launch.spec))
    if payload is not records.UNCHANGED:
        update = attrs.evolve(update, input=payload)
    if not tx.update_launch(instance_id, update, held_by=launch.holder):
        raise errors.OperationRefused(f"Instance '{instance_id}' changed meanwhile; try again")
    pending = tx.get_pending_signal(instance_id)
    if pending is not None:
        # A stop's cancel that no process took must not cancel the retried run.
        tx.acknowledge_signal(instance_id, pending.signal_type, now)
    tx.update_instance(
        instance_id,
        InstanceUpdate(
            status=InstanceStatus.PENDING,
            finished_at=None,
            output=None,
            error=None,
            sleep_until=None,
        ),
    )
    _event(
        tx,
        instance_id,
        EventType.RETRIED,
        now,
        was=instance.status.value,
        error=instance.error,
        checkpoint=instance.checkpoint_id,
        changed=sorted(update.changes().keys() & {"spec", "input"}),
    )
    return instance


def fork_id(source_id: str) -> str:
    """The id a fork of ``source_id`` gets unless one is given: ``<source>-fork-<8 hex>``."""
    return f"{source_id}-fork-{secrets.token_hex(4)}"


def fork(
    tx: Transaction,
    source_id: str,
    checkpoint_id: str | None,
    new_id: str,
    now: dt.datetime,
    *,
    respec: Callable[[str], str] | None = None,
    payload: bytes | None = records.UNCHANGED,
) -> str:
    """Store the new instance ``new_id``, pending and due at once, that runs again
    from ``source_id``'s checkpoint ``checkpoint_id`` (None: its latest).

    It gets copies of the source's checkpoints saved up to and including that one,
    in the order they were saved (byte for byte, with their times), the source's
    tenant, and its launch: its specification (made anew by ``respec``), input
    (replaced by ``payload``), restart policy, queue, key and priority, with a
    fresh count of attempts and failures. Its ``checkpoint_id`` is the one forked
    from, so that its process resumes there as a retried one does, and its
    launch names its origin. The source is not changed, whatever its status.
    Refused for an unknown source or checkpoint, a source without a launch, and
    a ``new_id`` that exists. Returns the checkpoint forked from.
    """
    source, launch = _launched(
        tx, source_id, "no launch specification says how to run a fork of it"
    )
    if checkpoint_id is None:
        checkpoint_id = source.checkpoint_id
        if checkpoint_id is None:
            raise errors.OperationRefused(f"Instance '{source_id}' has no checkpoint to fork from")
    if tx.get_checkpoint(source_id, checkpoint_id) is None:
        raise errors.OperationRefused(f"Instance '{source_id}' has no checkpoint '{checkpoint_id}'")
    if tx.get_instance(new_id) is not None:
        raise errors.OperationRefused(f"Instance '{new_id}' already exists")
    # list_checkpoints is newest first (ties: the last stored first): reversed, the
    # order they were saved in.
    saved = tx.list_checkpoints(source_id, limit=tx.count_checkpoints(source_id))[::-1]
    upto = next(n for n, info in enumerate(saved) if info.checkpoint_id == checkpoint_id)
    if not tx.create_instance(new_id, source.tenant_id, now):
        raise errors.OperationRefused(f"Instance '{new_id}' was just created by another call")
    for info in saved[: upto + 1]:
        stored = tx.get_checkpoint(source_id, info.checkpoint_id)
        tx.insert_checkpoint(new_id, stored.checkpoint_id, stored.state, stored.created_at)
    tx.update_instance(new_id, InstanceUpdate(checkpoint_id=checkpoint_id))
    tx.insert_launch(
        records.Launch(
            new_id,
            launch.spec if respec is None else respec(launch.spec),
            launch.input if payload is records.UNCHANGED else payload,
            launch.max_failures,
            next_launch_at=now,
            queue=launch.queue,
            key=launch.key,
            priority=launch.priority,
            origin_instance=source_id,
            origin_checkpoint=checkpoint_id,
        )
    )
    return checkpoint_id


def resume(tx: Transaction, instance_id: str, now: dt.datetime) -> None:
    """A resume was sent: a suspended instance whose process is gone is due at once."""
    instance, launch = _locked(tx, instance_id)
    if (
        launch is not None
        and instance.status is InstanceStatus.SUSPENDED
        and launch.claimed_by is None
    ):
        tx.update_launch(instance_id, LaunchUpdate(next_launch_at=now), held_by=launch.holder)


def request_stop(tx: Transaction, instance_id: str, grace: dt.timedelta, now: dt.datetime) -> bool:
    """Send cancel and set the deadline past which the process is terminated.

    Returns False if the instance has no launch (no launcher will terminate it).
    """
    instance, launch = _locked(tx, instance_id)
    if instance is None:
        raise errors.OperationRefused(f"Instance '{instance_id}' not found")
    if instance.status.is_terminal:
        raise errors.OperationRefused(
            f"Instance '{instance_id}' is already {instance.status.value}"
        )
    tx.put_signal(instance_id, records.SignalType.CANCEL, b"stop requested", now)
    stop_children(tx, instance_id, grace, now)
    if launch is None:
        return False
    tx.update_launch(
        instance_id,
        LaunchUpdate(stop_deadline=now + grace, next_launch_at=None),
        held_by=launch.holder,
    )
    if launch.claimed_by is None and (
        instance.status is not InstanceStatus.RUNNING or launch.next_launch_at is not None
    ):
        # nothing runs it: a stop of a pending, suspended or due instance is immediate
        tx.update_instance(
            instance_id, _final(InstanceStatus.CANCELLED, now, "stopped before it ran again")
        )
    return True


def cancel_unanswered(tx: Transaction, instance_id: str, reason: str, now: dt.datetime) -> bool:
    """Record ``cancelled`` for an instance that did not end by itself after a stop.

    A claim still in force is kept: its launcher may yet be ending the process,
    and records the end when it has; releasing it would let a retry start a
    second copy beside the first."""
    instance, launch = _locked(tx, instance_id)
    if instance is None or instance.status.is_terminal:
        return False
    tx.update_instance(instance_id, _final(InstanceStatus.CANCELLED, now, reason))
    stop_children(tx, instance_id, STOP_GRACE, now)
    if launch is None:
        return True
    in_force = launch.claimed_by is not None and launch.claimed_until > now
    release = LaunchUpdate(next_launch_at=None) if in_force else _release(next_launch_at=None)
    tx.update_launch(instance_id, release, held_by=launch.holder)
    return True


# --- launchers ------------------------------------------------------------------


def wake_sleepers(
    tx: Transaction,
    spec: str,
    max_failures: int,
    now: dt.datetime,
    due_before: dt.datetime,
    limit: int,
) -> list[str]:
    """Give each sleeper that nothing launches, due since ``due_before``, a launch of
    ``spec`` (the server's wake command), due at once; return their ids."""
    woken = []
    for sleeper in tx.list_due_sleepers(due_before=due_before, limit=limit):
        instance, launch = _locked(tx, sleeper.instance_id)
        if (
            instance is None
            or launch is not None
            or instance.status is not InstanceStatus.SUSPENDED
            or instance.sleep_until is None
            or instance.sleep_until > due_before
        ):
            continue
        tx.insert_launch(
            records.Launch(instance.instance_id, spec, None, max_failures, next_launch_at=now)
        )
        woken.append(instance.instance_id)
    return woken


def claim(
    tx: Transaction, launcher: str, now: dt.datetime, lease: dt.timedelta, limit: int
) -> list[tuple[records.Launch, records.Instance]]:
    """Claim up to ``limit`` due launches for ``launcher``, each starting its next
    attempt; never one that another launcher holds, nor one its queue's limits hold
    back. The highest priority first, then the concurrency keys in turn, then the
    earliest due (the order of :meth:`~Transaction.list_due_launches`)."""
    tx.lock_queues()
    queues = {queue.name: queue for queue in tx.list_queues()}
    claimed: list[tuple[records.Launch, records.Instance]] = []
    while len(claimed) < limit:
        # Each pass is chosen with the claims of the ones before counted.
        progress = False
        for instance_id in tx.list_due_launches(now=now, limit=limit - len(claimed)):
            instance, launch = _locked(tx, instance_id)
            if launch is None or not _due(launch, now):
                continue
            if instance.status.is_terminal:
                tx.update_launch(instance_id, _release(next_launch_at=None), held_by=launch.holder)
                continue
            queue = queues.get(launch.queue)
            if queue is not None and held_back(tx, queue, launch, now) is not None:
                continue
            update = LaunchUpdate(
                claimed_by=launcher,
                claimed_until=now + lease,
                attempt=launch.attempt + 1,
                # Taken before the process starts, which may register before its
                # launch is recorded: its own registration is the next number.
                registration=instance.registration,
                resumed_from=instance.checkpoint_id,
                launched_at=None,
                next_launch_at=None,
                pid=None,
                pid_started=None,
                host=None,
            )
            if tx.update_launch(instance_id, update, held_by=launch.holder):
                if queue is not None and queue.rate_limit is not None:
                    period = dt.timedelta(seconds=queue.rate_period)
                    tx.record_queue_start(queue.name, now, now + period)
                claimed.append((attrs.evolve(launch, **update.changes()), instance))
                progress = True
        if not progress:
            break
    return claimed


def held_back(
    tx: Transaction, queue: records.Queue, launch: records.Launch, now: dt.datetime
) -> str | None:
    """Why ``queue``'s limits keep the due ``launch`` from being claimed now, or None."""
    if queue.paused:
        return f"queue {queue.name} is paused"
    if queue.concurrency is not None:
        running = tx.count_claimed(queue.name)
        if running >= queue.concurrency:
            return f"queue {queue.name} is full ({running} of {queue.concurrency} running)"
    if queue.per_key is not None and launch.key is not None:
        running = tx.count_claimed(queue.name, launch.key)
        if running >= queue.per_key:
            return f"key {launch.key} is full ({running} of {queue.per_key} running)"
    if queue.rate_limit is not None:
        started = tx.count_queue_starts(queue.name, now)
        if started >= queue.rate_limit:
            return (
                f"queue {queue.name}'s rate limit ({queue.rate_limit} starts per "
                f"{queue.rate_period:g}s) is reached"
            )
    return None


def wait_reason(
    tx: Transaction, instance: records.Instance, launch: records.Launch, now: dt.datetime
) -> str | None:
    """Why a pending instance of ``runtara-core start`` is not running yet, or None
    when it is not waiting for a launch."""
    if instance.status.is_terminal or launch.claimed_by is not None:
        return None
    if launch.next_launch_at is None:
        return None
    if launch.next_launch_at > now:
        return f"not before {launch.next_launch_at.isoformat(timespec='seconds')}"
    queue = tx.get_queue(launch.queue)
    reason = None if queue is None else held_back(tx, queue, launch, now)
    return reason or "due: waiting for a launcher (each server runs at most --max-running)"


def _due(launch: records.Launch, now: dt.datetime) -> bool:
    return (
        launch.next_launch_at is not None
        and launch.next_launch_at <= now
        and (launch.claimed_until is None or launch.claimed_until <= now)
    )


def launched(
    tx: Transaction,
    instance_id: str,
    holder: records.LaunchHolder,
    pid: int,
    pid_started: int | None,
    host: str,
    now: dt.datetime,
) -> bool:
    """Record that the attempt ``holder`` claimed runs as process ``pid`` (an event
    ``launched``); False if the launch moved on meanwhile."""
    instance, launch = _locked(tx, instance_id)
    if launch is None:
        return False
    update = LaunchUpdate(pid=pid, pid_started=pid_started, host=host, launched_at=now)
    if not tx.update_launch(instance_id, update, held_by=holder):
        return False
    _event(
        tx,
        instance_id,
        EventType.LAUNCHED,
        now,
        attempt=holder.attempt,
        pid=pid,
        host=host,
        launcher=holder.claimed_by,
        failures=launch.failures,
    )
    return True


def renew(
    tx: Transaction, instance_id: str, holder: records.LaunchHolder, until: dt.datetime
) -> bool:
    """Extend the claim of a launch whose process ``holder`` watches; False if the
    launch moved on (another launcher took it over): stop watching then."""
    instance, launch = _locked(tx, instance_id)
    if launch is None:
        return False
    return tx.update_launch(instance_id, LaunchUpdate(claimed_until=until), held_by=holder)


def exited(
    tx: Transaction,
    instance_id: str,
    holder: records.LaunchHolder,
    how: str,
    now: dt.datetime,
    backoff: Backoff,
    *,
    code: int | None = None,
    signal: int | None = None,
    stderr: str = "",
    lost: bool = False,
) -> Outcome:
    """Record how the attempt ``holder`` claimed ended (an event ``exited``) and move
    the launch on by the restart policy (see :class:`Outcome`).

    ``lost`` says the process is gone or silent while another process may hold
    the registration: then nothing counts as a take-over.
    """
    instance, launch = _locked(tx, instance_id)
    if launch is None or launch.holder != holder:
        return Outcome.STALE
    failures = 0
    retry_at = None
    # A process that never registered did not make the instance what it is now.
    registered = launch.registration is None or instance.registration > launch.registration
    if instance.status.is_terminal:
        outcome, update = Outcome.FINISHED, _release(next_launch_at=None)
    elif instance.status is InstanceStatus.SUSPENDED and registered:
        outcome = Outcome.SUSPENDED
        update = _release(next_launch_at=_wake_time(tx, instance, now), failures=0)
    elif launch.stop_deadline is not None:
        outcome, update = Outcome.STOPPED, _release(next_launch_at=None)
        tx.update_instance(
            instance_id,
            _final(
                InstanceStatus.CANCELLED,
                now,
                f"stopped: the instance did not acknowledge the cancel in time and was "
                f"terminated ({how})",
            ),
        )
    elif (
        not lost
        and launch.registration is not None
        and instance.registration > launch.registration + 1
    ):
        outcome, update = Outcome.TAKEN_OVER, _release(next_launch_at=None)
    else:
        progress = instance.checkpoint_id != launch.resumed_from
        failures = 0 if progress else launch.failures + 1
        if failures >= launch.max_failures:
            outcome = Outcome.FAILED
            update = _release(next_launch_at=None, failures=failures)
            tx.update_instance(
                instance_id,
                _final(InstanceStatus.FAILED, now, _gave_up(launch, failures, how, stderr)),
            )
        else:
            outcome = Outcome.RELAUNCH
            retry_at = now + backoff.after(failures)
            update = _release(next_launch_at=retry_at, failures=failures)
    tx.update_launch(instance_id, attrs.evolve(update, last_exit=how), held_by=holder)
    _event(
        tx,
        instance_id,
        EventType.EXITED,
        now,
        attempt=holder.attempt,
        code=code,
        signal=signal,
        how=how,
        outcome=outcome.value,
        failures=failures,
        max_failures=launch.max_failures,
        retry_at=None if retry_at is None else retry_at.isoformat(timespec="milliseconds"),
    )
    return outcome


def _gave_up(launch: records.Launch, failures: int, how: str, stderr: str) -> str:
    error = (
        f"gave up after {failures} failed attempt{'s' if failures != 1 else ''} in a row "
        f"without progress ({launch.attempt} launch{'es' if launch.attempt != 1 else ''} "
        f"in all): the last one {how}"
    )
    if stderr:
        error += f"; the last lines of its stderr:\n{stderr}"
    return error


def fail_unlaunchable(
    tx: Transaction,
    instance_id: str,
    holder: records.LaunchHolder,
    reason: str,
    now: dt.datetime,
) -> bool:
    """The claimed launch can never run (its specification is malformed): the
    instance is failed with ``reason``; False if the launch moved on meanwhile."""
    instance, launch = _locked(tx, instance_id)
    if launch is None or instance.status.is_terminal:
        return False
    how = f"could not be launched: {reason}"
    if not tx.update_launch(
        instance_id, _release(next_launch_at=None, last_exit=how), held_by=holder
    ):
        return False
    tx.update_instance(instance_id, _final(InstanceStatus.FAILED, now, how))
    return True


def _final(status: InstanceStatus, now: dt.datetime, error: str) -> InstanceUpdate:
    return InstanceUpdate(
        status=status, finished_at=now, error=error, output=None, sleep_until=None
    )


def _wake_time(tx: Transaction, instance: records.Instance, now: dt.datetime) -> dt.datetime | None:
    """When a suspended instance is due again: at its wake time when it sleeps, at
    once when a resume is pending, else never (until it is resumed)."""
    if instance.sleep_until is not None:
        return instance.sleep_until
    pending = tx.get_pending_signal(instance.instance_id)
    if pending is not None and pending.signal_type is records.SignalType.RESUME:
        return now
    return None


def lapsed(
    tx: Transaction, now: dt.datetime, due_before: dt.datetime, limit: int
) -> list[records.Launch]:
    """Launches of live instances that no launcher holds any more: their claim ran
    out (the launcher's server stopped), or nobody was left watching them."""
    return tx.list_lapsed_launches(now=now, due_before=due_before, limit=limit)


def held_by(tx: Transaction, launcher: str, limit: int) -> list[records.Launch]:
    """Launches ``launcher`` holds (a restarted server finds its own again)."""
    return tx.list_claimed_launches(claimed_by=launcher, limit=limit)


def adopt(
    tx: Transaction,
    instance_id: str,
    seen: records.LaunchHolder,
    launcher: str,
    now: dt.datetime,
    lease: dt.timedelta,
) -> records.Launch | None:
    """Take over watching a launch that was held as ``seen`` and whose process still
    runs (or ended unwatched, to record its end); None if another launcher holds it
    in force, or it moved on."""
    instance, launch = _locked(tx, instance_id)
    if launch is None or launch.holder != seen:
        return None
    in_force = launch.claimed_until is not None and launch.claimed_until > now
    if in_force and launch.claimed_by != launcher:
        return None
    update = LaunchUpdate(claimed_by=launcher, claimed_until=now + lease)
    if not tx.update_launch(instance_id, update, held_by=seen):
        return None
    return attrs.evolve(launch, **update.changes())


def relaunch_lost(
    tx: Transaction,
    instance_id: str,
    seen: records.LaunchHolder,
    launcher: str,
    how: str,
    now: dt.datetime,
    lease: dt.timedelta,
    backoff: Backoff,
) -> Outcome:
    """A launch held as ``seen`` whose process is gone (or silent): take it, then
    record its end like an exit of the attempt it was on."""
    launch = adopt(tx, instance_id, seen, launcher, now, lease)
    if launch is None:
        return Outcome.STALE
    return exited(tx, instance_id, launch.holder, how, now, backoff, lost=True)


def release_unstarted(
    tx: Transaction, instance_id: str, seen: records.LaunchHolder, now: dt.datetime
) -> bool:
    """A launch claimed as ``seen`` by a launcher that stopped before it recorded a
    process, its claim run out: due again at once, without counting a failure;
    but when the instance was registered since the claim, the process did start
    (it was spawned, its record lost): it is left running, unwatched, and
    relaunched only if it falls silent, so that no second copy starts beside it
    (or, when it paused itself and a resume is pending, due at once)."""
    instance, launch = _locked(tx, instance_id)
    if launch is None or launch.holder != seen or launch.pid is not None:
        return False
    started = launch.registration is not None and instance.registration > launch.registration
    if instance.status.is_terminal:
        due = None
    elif not started:
        due = now
    elif instance.status is InstanceStatus.SUSPENDED and instance.sleep_until is None:
        due = _wake_time(tx, instance, now)
    else:
        due = None  # running, or a sleeper: woken when its time comes
    return tx.update_launch(instance_id, _release(next_launch_at=due), held_by=seen)


def wake_unwatched(
    tx: Transaction,
    instance_id: str,
    seen: records.LaunchHolder,
    now: dt.datetime,
    due_before: dt.datetime,
) -> bool:
    """An unwatched launch whose instance sleeps and is due: due at once."""
    instance, launch = _locked(tx, instance_id)
    if (
        launch is None
        or launch.holder != seen
        or launch.claimed_by is not None
        or instance.status is not InstanceStatus.SUSPENDED
        or instance.sleep_until is None
        or instance.sleep_until > due_before
    ):
        return False
    return tx.update_launch(instance_id, LaunchUpdate(next_launch_at=now), held_by=seen)
