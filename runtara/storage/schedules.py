"""Schedules: instances started at the ticks of a cron expression or an interval.

Each function is one operation, run inside one storage transaction. A server's
scheduler calls :func:`fire_due` twice a second; with several servers on one
database each tick still starts once: the schedule's row is locked while its
due ticks are started (PostgreSQL skips rows another server holds), the ticks
already started are behind its ``next_tick_at`` when the lock goes, and an
instance's id is made of the schedule's name and the tick's time, so a tick
started twice would meet its own instance (and start nothing more).

Each instance started for the tick at time T:

* is ``<name>@<T in UTC, as 2025-01-31T09:00:00Z>`` (a :func:`trigger` adds the
  microseconds, ``...T09:00:00.123456Z``, so that it never takes a tick's id);
* runs the schedule's launch specification with ``RUNTARA_SCHEDULED_AT=<T>`` added
  to its environment;
* gets as input the schedule's JSON object with ``"scheduled_at": "<T>"`` added,
  or ``{"scheduled_at": "<T>"}`` when the schedule has none.

The launch specification is JSON (:class:`runtara.launcher.spec.LaunchSpec`'s,
which its callers check); the launch's restart policy and flow control are read
from its fields ``max_failures``, ``queue``, ``key`` and ``priority``.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import attrs

from runtara import errors, limits, records, schedule_times
from runtara.storage import launches, operations
from runtara.storage.transaction import Transaction

OVERLAPS = ("skip", "allow", "cancel-previous")
CATCH_UPS = ("none", "one", "all")
MAX_CATCH_UP = 100
"""Missed ticks at most started at once with catch-up ``all`` (the latest ones)."""
STOP_GRACE = dt.timedelta(seconds=30)
"""How long the instance a ``cancel-previous`` tick stops has to end by itself."""
MIN_EVERY = 1.0
MAX_EVERY = limits.MAX_SLEEP.total_seconds()
SCHEDULED_AT_ENV = "RUNTARA_SCHEDULED_AT"
_TICK_STAMP = len("@2025-01-31T09:00:00.123456Z")
MAX_NAME_BYTES = limits.MAX_ID_BYTES - _TICK_STAMP
"""Longest schedule name, in UTF-8 bytes: its instances' ids add ``@`` and a time."""


@attrs.frozen
class Fired:
    """What :func:`fire_due` did."""

    started: list[str] = attrs.Factory(list)
    """Ids of the instances started, in the order started."""
    skipped: int = 0
    """Ticks that started nothing."""
    paused: dict[str, str] = attrs.Factory(dict)
    """Schedules paused because they can start nothing more, with the reason."""

    def plus(self, other: Fired) -> Fired:
        return Fired(
            self.started + other.started,
            self.skipped + other.skipped,
            {**self.paused, **other.paused},
        )


@attrs.frozen
class _Launch:
    """The launch fields of a specification."""

    max_failures: int = 3
    queue: str = records.DEFAULT_QUEUE
    key: str | None = None
    priority: int = 0


# --- operators ------------------------------------------------------------------


def add(
    tx: Transaction,
    name: str,
    *,
    cron: str | None,
    every: float | None,
    timezone: str,
    overlap: str,
    catch_up: str,
    tenant_id: str,
    spec: str,
    payload: bytes | None,
    now: dt.datetime,
    replace: bool = False,
) -> records.Schedule:
    """Create the schedule ``name`` and return it; its first tick is the first time of
    ``cron`` (read in ``timezone``) after ``now``, or ``every`` seconds after ``now``
    (rounded down to the second: an interval's ticks fall on whole multiples of it
    from there, so that whole seconds stay whole).

    Refused (OperationRefused, saying why) for a bad argument, and for a name
    already taken unless ``replace``: then the old schedule is replaced afresh,
    counters and last tick included (its instances are left as they are, and a
    tick of the new one does not wait for them whatever its ``overlap``).
    """
    _check_name(name)
    _check_timing(cron, every, timezone)
    if overlap not in OVERLAPS:
        raise errors.OperationRefused(f"overlap {overlap!r} is not one of {', '.join(OVERLAPS)}")
    if catch_up not in CATCH_UPS:
        raise errors.OperationRefused(f"catch-up {catch_up!r} is not one of {', '.join(CATCH_UPS)}")
    operations.require_id(tenant_id, "tenant_id")
    _launch_fields(_spec_object(spec))
    _payload_object(payload)
    if tx.get_schedule(name, lock=True) is not None and not replace:
        raise errors.OperationRefused(
            f"Schedule '{name}' already exists; remove it first, or replace it"
        )
    schedule = records.Schedule(
        name=name,
        cron=cron,
        every=None if every is None else float(every),
        timezone=timezone,
        overlap=overlap,
        catch_up=catch_up,
        tenant_id=tenant_id,
        spec=spec,
        input=payload,
        created_at=now,
        next_tick_at=now,
    )
    first = _timetable(schedule).next_after(now)
    if first is None:
        raise errors.OperationRefused(f"cron {cron!r} has no time after {_iso(now)}")
    schedule = attrs.evolve(schedule, next_tick_at=first)
    tx.put_schedule(schedule)
    return schedule


def set_paused(tx: Transaction, name: str, paused: bool, now: dt.datetime) -> records.Schedule:
    """Pause the schedule (no tick starts anything) or resume it; returns it as it is
    now. A resumed schedule's next tick is its first after ``now``: the ticks that
    fell while it was paused are not caught up, nor counted as skipped."""
    schedule = _require(tx, name)
    if schedule.paused == paused:
        return schedule
    if paused:
        schedule = attrs.evolve(schedule, paused=True)
    else:
        following = _timetable(schedule).next_after(now)
        if following is None:
            raise errors.OperationRefused(
                f"Schedule '{name}' has no tick after {_iso(now)}: its cron "
                f"{schedule.cron!r} names only past years"
            )
        schedule = attrs.evolve(schedule, paused=False, next_tick_at=following)
    tx.put_schedule(schedule)
    return schedule


def remove(tx: Transaction, name: str) -> bool:
    """Delete the schedule (its instances are left as they are); False if there was none."""
    return tx.delete_schedule(name)


def trigger(tx: Transaction, name: str, now: dt.datetime) -> str:
    """Start one instance of the schedule now, as a tick at ``now`` would, paused or
    not and whatever its ``overlap``; returns the instance's id. It counts among
    the schedule's ticks and is the instance the next tick's ``overlap`` looks at."""
    schedule = _require(tx, name)
    instance_id = f"{name}@{now.astimezone(schedule_times.UTC):%Y-%m-%dT%H:%M:%S.%fZ}"
    _start(tx, schedule, instance_id, now, now)
    tx.put_schedule(
        attrs.evolve(
            schedule, last_tick_at=now, last_instance_id=instance_id, ticks=schedule.ticks + 1
        )
    )
    return instance_id


# --- the scheduler --------------------------------------------------------------


def fire_due(tx: Transaction, now: dt.datetime, *, limit: int = 50) -> Fired:
    """Start the due ticks of at most ``limit`` schedules not paused (see
    :func:`fire`), those due longest first; skips the schedules another server
    is firing at the same time."""
    fired = Fired()
    for name in tx.list_due_schedules(now=now, limit=limit):
        schedule = tx.get_schedule(name, lock=True)
        if schedule is None or schedule.paused or schedule.next_tick_at > now:
            continue  # changed since it was listed
        fired = fired.plus(fire(tx, schedule, now))
    return fired


def fire(tx: Transaction, schedule: records.Schedule, now: dt.datetime) -> Fired:
    """Start the schedule's ticks from its ``next_tick_at`` up to ``now``, by its rules,
    and move it on to its first tick after ``now``.

    A tick is on time if it is at most half the time to the following tick late
    (at least 1 s, at most 10 s). Catch-up ``none`` starts the latest tick if it
    is on time; ``one`` starts the latest tick; ``all`` starts each of them (the
    latest :data:`MAX_CATCH_UP`). Then each tick to start looks at the previous
    tick's instance: while it has not finished, ``skip`` starts nothing,
    ``allow`` starts anyway, and ``cancel-previous`` stops it (with
    :data:`STOP_GRACE` to end by itself) and starts. Of ticks caught up together
    with ``cancel-previous`` only the latest starts, since each would stop the one
    before at once. Every tick not started counts as skipped.

    A schedule that can start nothing more is paused instead, saying why in
    :attr:`Fired.paused`: its cron expression names only past years, or what is
    stored cannot be used (written by other means than :func:`add`).
    """
    problem = _unusable(schedule)
    if problem is not None:
        tx.put_schedule(attrs.evolve(schedule, paused=True))
        return Fired(paused={schedule.name: problem})
    timetable = _timetable(schedule)
    due, older = timetable.due(schedule.next_tick_at, now, MAX_CATCH_UP)
    following = timetable.next_after(now)
    chosen = _caught_up(schedule.catch_up, due, following, now)
    if schedule.overlap == "cancel-previous":
        chosen = chosen[-1:]
    started: list[str] = []
    counted = 0
    previous = schedule.last_instance_id
    for tick in chosen:
        if not _overlap_admits(tx, schedule, previous, now):
            continue
        instance_id = f"{schedule.name}@{tick.astimezone(schedule_times.UTC):%Y-%m-%dT%H:%M:%SZ}"
        counted += 1
        previous = instance_id
        try:
            if not _start(tx, schedule, instance_id, tick, now):
                started.append(instance_id)
        except errors.OperationRefused:
            pass  # another instance holds the id (of an older schedule of this name): started
    skipped = older + len(due) - counted
    tx.put_schedule(
        attrs.evolve(
            schedule,
            next_tick_at=schedule.next_tick_at if following is None else following,
            paused=following is None,
            last_tick_at=due[-1] if due else schedule.last_tick_at,
            last_instance_id=previous,
            ticks=schedule.ticks + len(started),
            skipped=schedule.skipped + skipped,
        )
    )
    if following is None:
        return Fired(started, skipped, {schedule.name: f"cron {schedule.cron!r} has no more times"})
    return Fired(started, skipped)


def _unusable(schedule: records.Schedule) -> str | None:
    """Why the stored schedule cannot start anything, or None."""
    try:
        _check_timing(schedule.cron, schedule.every, schedule.timezone)
        _launch_fields(_spec_object(schedule.spec))
        _payload_object(schedule.input)
    except errors.OperationRefused as error:
        return str(error)
    return None


def _caught_up(
    catch_up: str, due: list[dt.datetime], following: dt.datetime | None, now: dt.datetime
) -> list[dt.datetime]:
    """The due ticks (oldest first) that catch-up lets start."""
    if not due or catch_up == "all":
        return due
    latest = due[-1]
    if catch_up == "none" and now - latest > schedule_times.on_time_window(latest, following):
        return []
    return [latest]


def _overlap_admits(
    tx: Transaction, schedule: records.Schedule, previous: str | None, now: dt.datetime
) -> bool:
    """Whether a tick may start beside the previous tick's instance ``previous``
    (stopping it first for ``cancel-previous``)."""
    if previous is None or not _unfinished(tx, previous):
        return True
    if schedule.overlap == "cancel-previous":
        launches.request_stop(tx, previous, STOP_GRACE, now)
    return schedule.overlap != "skip"


def _unfinished(tx: Transaction, instance_id: str) -> bool:
    instance = tx.get_instance(instance_id)
    return instance is not None and not instance.status.is_terminal


def _start(
    tx: Transaction,
    schedule: records.Schedule,
    instance_id: str,
    tick: dt.datetime,
    now: dt.datetime,
) -> bool:
    """Start the schedule's instance ``instance_id`` for the tick at ``tick``; True if
    deduplicated (:func:`runtara.storage.launches.start_instance`)."""
    at = _iso(tick)
    spec = _spec_object(schedule.spec)
    launch = _launch_fields(spec)
    spec["env"] = {**spec.get("env", {}), SCHEDULED_AT_ENV: at}
    payload = {**(_payload_object(schedule.input) or {}), "scheduled_at": at}
    return launches.start_instance(
        tx,
        instance_id,
        schedule.tenant_id,
        json.dumps(spec, separators=(",", ":")),
        json.dumps(payload, separators=(",", ":")).encode(),
        launch.max_failures,
        now,
        queue=launch.queue,
        key=launch.key,
        priority=launch.priority,
    )


# --- checks and conversions -----------------------------------------------------


def _require(tx: Transaction, name: str) -> records.Schedule:
    """The schedule, its row locked; OperationRefused if there is none."""
    schedule = tx.get_schedule(name, lock=True)
    if schedule is None:
        raise errors.OperationRefused(f"Schedule '{name}' not found")
    return schedule


def _timetable(schedule: records.Schedule) -> schedule_times.Timetable:
    return schedule_times.Timetable(
        schedule.cron, schedule.every, schedule.timezone, schedule.created_at
    )


def _iso(moment: dt.datetime) -> str:
    """ISO 8601 in UTC: whole seconds, or with milliseconds when there are some."""
    moment = moment.astimezone(schedule_times.UTC)
    spec = "seconds" if moment.microsecond == 0 else "milliseconds"
    return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def _check_name(name: str) -> None:
    operations.require_id(name, "schedule")
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_NAME_BYTES:
        raise errors.OperationRefused(
            f"schedule name is {size} bytes long; at most {MAX_NAME_BYTES} are allowed "
            "(its instances' ids are the name followed by @ and the tick's time)"
        )


def _check_timing(cron: str | None, every: float | None, timezone: str) -> None:
    if (cron is None) == (every is None):
        raise errors.OperationRefused("a schedule needs either a cron expression or an interval")
    if cron is not None:
        problem = schedule_times.cron_problem(cron)
        if problem is not None:
            raise errors.OperationRefused(problem)
    elif (
        not isinstance(every, (int, float))
        or isinstance(every, bool)
        or not MIN_EVERY <= every <= MAX_EVERY
    ):
        raise errors.OperationRefused(
            f"every {every!r} is not an interval in seconds: at least {MIN_EVERY:g}, "
            f"at most {MAX_EVERY:.0f} (3650 days)"
        )
    try:
        schedule_times.zone(timezone)
    except ValueError as error:
        raise errors.OperationRefused(str(error)) from None


def _spec_object(spec: str) -> dict[str, Any]:
    try:
        data = json.loads(spec)
    except (ValueError, RecursionError) as error:
        raise errors.OperationRefused(f"the launch specification is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise errors.OperationRefused("the launch specification must be a JSON object")
    if not isinstance(data.get("env", {}), dict):
        raise errors.OperationRefused("the launch specification's env must be a JSON object")
    return data


def _launch_fields(spec: dict[str, Any]) -> _Launch:
    defaults = _Launch()
    launch = _Launch(
        max_failures=spec.get("max_failures", defaults.max_failures),
        queue=spec.get("queue", defaults.queue),
        key=spec.get("key", defaults.key),
        priority=spec.get("priority", defaults.priority),
    )
    if not _is_int(launch.max_failures) or not _is_int(launch.priority):
        raise errors.OperationRefused(
            "the launch specification's max_failures and priority must be integers"
        )
    if not isinstance(launch.queue, str) or not (launch.key is None or isinstance(launch.key, str)):
        raise errors.OperationRefused(
            "the launch specification's queue must be text, and its key text or null"
        )
    problem = limits.text_problem("queue", launch.queue) or (
        launch.key and limits.text_problem("key", launch.key)
    )
    if problem:
        raise errors.OperationRefused(f"the launch specification's {problem}")
    return launch


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _payload_object(payload: bytes | None) -> dict[str, Any] | None:
    """The schedule's input as a JSON object (None if it has none)."""
    if payload is None:
        return None
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise errors.OperationRefused(
            "a schedule's input must be a JSON object: each tick's instance gets it "
            'with the tick\'s time added as "scheduled_at"'
        )
    if "scheduled_at" in data:
        raise errors.OperationRefused(
            'a schedule\'s input must not have "scheduled_at": each tick sets it to the '
            "tick's time"
        )
    return data
