"""The rules of launching: starting, claiming, recording attempts, stopping.

Every launcher (one per server process) coordinates with the others only
through the store: a due launch is claimed by exactly one of them for a lease,
the claim is renewed while its process is watched, and how the process ended
decides what happens next. Each function here is one transaction.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

from runtara import errors, records
from runtara.records import EventType, InstanceStatus, InstanceUpdate, LaunchUpdate

if TYPE_CHECKING:
    from runtara.storage import base

RELEASED = LaunchUpdate(claimed_by=None, claimed_until=None, pid=None, pid_started=None, host=None)
"""A launch no launcher watches any more."""


def start_instance(
    tx: base.Transaction,
    instance_id: str,
    tenant_id: str,
    spec: str,
    payload: bytes | None,
    max_attempts: int,
    now: dt.datetime,
    *,
    replace: bool = False,
) -> None:
    """Store a pending instance with its launch specification, due at once.

    An id that exists is refused, unless it is finished and ``replace`` is set:
    then the old instance goes, with everything it owned.
    """
    existing = tx.get_instance(instance_id)
    if existing is not None:
        if not existing.status.is_terminal:
            raise errors.OperationRefused(
                f"Instance '{instance_id}' already exists and is {existing.status.value}"
            )
        if not replace:
            raise errors.OperationRefused(
                f"Instance '{instance_id}' already exists ({existing.status.value}); "
                "use --replace to start it afresh"
            )
        tx.delete_instance(instance_id)
    tx.create_instance(instance_id, tenant_id, now)
    tx.insert_launch(records.Launch(instance_id, spec, payload, max_attempts, next_launch_at=now))


def claim(
    tx: base.Transaction, launcher: str, now: dt.datetime, lease: dt.timedelta, limit: int
) -> list[tuple[records.Launch, records.Instance]]:
    """Claim up to ``limit`` due launches for ``launcher``, oldest due first, counting
    the attempt each starts; never one that another launcher holds."""
    claimed = []
    for launch in tx.claim_due_launches(
        now=now, claimed_by=launcher, claim_until=now + lease, limit=limit
    ):
        instance = tx.get_instance(launch.instance_id)
        if instance is None or instance.status.is_terminal:
            tx.update_launch(
                launch.instance_id, _release(next_launch_at=None, attempt=launch.attempt - 1)
            )
            continue
        claimed.append((launch, instance))
    return claimed


def _release(**changes) -> LaunchUpdate:
    return records.LaunchUpdate(**{**RELEASED.changes(), **changes})


def launched(
    tx: base.Transaction,
    instance_id: str,
    launcher: str,
    attempt: int,
    pid: int,
    pid_started: int | None,
    host: str,
    now: dt.datetime,
) -> None:
    """Record that ``attempt`` runs as process ``pid`` (an event ``launched``)."""
    instance = tx.get_instance(instance_id)
    launch = tx.get_launch(instance_id)
    if instance is None or launch is None or launch.claimed_by != launcher:
        return
    tx.update_launch(
        instance_id,
        LaunchUpdate(
            pid=pid, pid_started=pid_started, host=host, registration=instance.registration
        ),
    )
    _event(tx, instance_id, EventType.LAUNCHED, now, attempt=attempt, pid=pid, host=host)


def _event(tx: base.Transaction, instance_id: str, kind: EventType, now: dt.datetime, **facts):
    tx.insert_event(
        records.Event(
            instance_id=instance_id,
            event_type=kind,
            created_at=now,
            payload=json.dumps(facts, sort_keys=True).encode(),
        )
    )


def exited(
    tx: base.Transaction,
    instance_id: str,
    launcher: str,
    attempt: int,
    how: str,
    now: dt.datetime,
    *,
    code: int | None = None,
    signal: int | None = None,
    stderr: str = "",
    retry_at: dt.datetime | None = None,
    lost: bool = False,
) -> str:
    """Record how ``attempt`` ended (an event ``exited``) and decide what follows.

    Returns what follows: ``finished`` (the instance reached a final status),
    ``suspended`` (paused, or sleeping until it is due again), ``taken over``
    (another process registered the instance since), ``stopped`` (a stop ran out
    of grace: the instance is now cancelled), ``failed`` (no attempts left: the
    instance is failed, saying how the last attempt ended) or ``relaunch`` (due
    again at ``retry_at``); ``stale`` if this launcher no longer held it.
    ``lost`` says the process is gone or silent while another process may hold
    the registration: then nothing counts as a take-over.
    """
    instance = tx.get_instance(instance_id)
    launch = tx.get_launch(instance_id)
    if (
        instance is None
        or launch is None
        or launch.claimed_by != launcher
        or launch.attempt != attempt
    ):
        return "stale"
    _event(tx, instance_id, EventType.EXITED, now, attempt=attempt, code=code, signal=signal)
    release = _release(last_exit=how)
    if instance.status.is_terminal:
        tx.update_launch(instance_id, _release(last_exit=how, next_launch_at=None))
        return "finished"
    if instance.status is InstanceStatus.SUSPENDED:
        tx.update_launch(
            instance_id, _release(last_exit=how, next_launch_at=_wake_time(tx, instance, now))
        )
        return "suspended"
    if launch.stop_deadline is not None:
        tx.update_instance(
            instance_id,
            _final(
                InstanceStatus.CANCELLED,
                now,
                f"stopped: the instance did not acknowledge the cancel in time and was "
                f"terminated ({how})",
            ),
        )
        tx.update_launch(instance_id, release)
        return "stopped"
    if (
        not lost
        and launch.registration is not None
        and instance.registration > launch.registration + 1
    ):
        tx.update_launch(instance_id, release)
        return "taken over"
    if attempt >= launch.max_attempts:
        error = f"gave up after {attempt} attempt{'s' if attempt != 1 else ''}: the last one {how}"
        if stderr:
            error += f"; the last lines of its stderr:\n{stderr}"
        tx.update_instance(instance_id, _final(InstanceStatus.FAILED, now, error))
        tx.update_launch(instance_id, release)
        return "failed"
    tx.update_launch(instance_id, _release(last_exit=how, next_launch_at=retry_at or now))
    return "relaunch"


def _final(status: InstanceStatus, now: dt.datetime, error: str) -> InstanceUpdate:
    return InstanceUpdate(
        status=status, finished_at=now, error=error, output=None, sleep_until=None
    )


def _wake_time(
    tx: base.Transaction, instance: records.Instance, now: dt.datetime
) -> dt.datetime | None:
    """When a suspended instance is due again: at its wake time when it sleeps, at
    once when a resume is pending, else never (until it is resumed)."""
    if instance.sleep_until is not None:
        return instance.sleep_until
    pending = tx.get_pending_signal(instance.instance_id)
    if pending is not None and pending.signal_type is records.SignalType.RESUME:
        return now
    return None


def resume(tx: base.Transaction, instance_id: str, now: dt.datetime) -> None:
    """A resume was sent: a suspended instance whose process is gone is due at once."""
    instance = tx.get_instance(instance_id)
    launch = tx.get_launch(instance_id)
    if (
        instance is not None
        and launch is not None
        and instance.status is InstanceStatus.SUSPENDED
        and launch.claimed_by is None
    ):
        tx.update_launch(instance_id, LaunchUpdate(next_launch_at=now))


def request_stop(
    tx: base.Transaction, instance_id: str, grace: dt.timedelta, now: dt.datetime
) -> bool:
    """Send cancel and set the deadline past which the process is terminated.

    Returns False if the instance has no launch (no launcher will terminate it).
    """
    instance = tx.get_instance(instance_id)
    if instance is None:
        raise errors.OperationRefused(f"Instance '{instance_id}' not found")
    if instance.status.is_terminal:
        raise errors.OperationRefused(
            f"Instance '{instance_id}' is already {instance.status.value}"
        )
    tx.put_signal(instance_id, records.SignalType.CANCEL, b"stop requested", now)
    launch = tx.get_launch(instance_id)
    if launch is None:
        return False
    tx.update_launch(instance_id, LaunchUpdate(stop_deadline=now + grace, next_launch_at=None))
    if launch.claimed_by is None and instance.status is not InstanceStatus.RUNNING:
        # nothing runs it: a stop of a pending or suspended instance is immediate
        tx.update_instance(
            instance_id, _final(InstanceStatus.CANCELLED, now, "stopped before it ran again")
        )
    return True


def cancel_unanswered(
    tx: base.Transaction, instance_id: str, reason: str, now: dt.datetime
) -> bool:
    """Record ``cancelled`` for an instance that did not end by itself after a stop."""
    instance = tx.get_instance(instance_id)
    if instance is None or instance.status.is_terminal:
        return False
    tx.update_instance(instance_id, _final(InstanceStatus.CANCELLED, now, reason))
    launch = tx.get_launch(instance_id)
    if launch is not None:
        tx.update_launch(instance_id, _release(next_launch_at=None))
    return True


def lapsed(tx: base.Transaction, now: dt.datetime, limit: int) -> list[records.Launch]:
    """Launches of live instances that no launcher holds any more: their claim ran
    out (the launcher's server stopped), or nobody was left watching them."""
    return tx.list_lapsed_launches(now=now, limit=limit)


def adopt(
    tx: base.Transaction, instance_id: str, launcher: str, now: dt.datetime, lease: dt.timedelta
) -> records.Launch | None:
    """Take over watching a lapsed launch whose process still runs."""
    launch = tx.get_launch(instance_id)
    if launch is None or (
        launch.claimed_by is not None
        and launch.claimed_until is not None
        and launch.claimed_until > now
    ):
        return None
    tx.update_launch(instance_id, LaunchUpdate(claimed_by=launcher, claimed_until=now + lease))
    return launch


def relaunch_lost(
    tx: base.Transaction,
    instance_id: str,
    launcher: str,
    how: str,
    now: dt.datetime,
    lease: dt.timedelta,
    retry_at: dt.datetime,
) -> str:
    """A lapsed launch whose process is gone (or silent): claim it, then record its
    end like an exit of the attempt it was on."""
    launch = adopt(tx, instance_id, launcher, now, lease)
    if launch is None:
        return "stale"
    return exited(tx, instance_id, launcher, launch.attempt, how, now, retry_at=retry_at, lost=True)


def renew(tx: base.Transaction, launcher: str, until: dt.datetime) -> None:
    """Extend every claim ``launcher`` holds."""
    tx.renew_launches(claimed_by=launcher, claim_until=until)
