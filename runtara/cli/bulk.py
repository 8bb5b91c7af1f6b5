"""``stop``, ``retry``, ``signal`` and ``fork`` on many instances chosen by filters.

The selection is made first and fixed: :func:`select` pages through
``list_instances`` (newest first) and keeps the ids that match, so acting on
them cannot shift the paging. Then :func:`act` works through them in batches
of :data:`BATCH`, printing one outcome per instance as it goes.

Each action chooses only among the instances it applies to (``retry`` among
failed and cancelled ones, ``stop`` and ``signal`` among live ones), so a
rerun after an interruption skips what the first run changed: a retried
instance is pending, a stopped one cancelled. ``fork`` is the exception: it
leaves each instance as it was, so a rerun forks the same ones again.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Callable, Iterator, Sequence

import attrs

from runtara import errors, records
from runtara.admin.base import Admin
from runtara.cli import common, render

BATCH = 50
"""Instances acted on between two progress lines."""
CONFIRM_ABOVE = 10
"""More matches than this need ``--yes``."""
PAGE = 100
"""Instances read per ``list_instances`` call while selecting."""
POLL = 0.2

Status = records.InstanceStatus
LIVE = frozenset({Status.PENDING, Status.RUNNING, Status.SUSPENDED})
RETRYABLE = frozenset({Status.FAILED, Status.CANCELLED})
ANY = frozenset(Status)
APPLIES = {"retry": RETRYABLE, "stop": LIVE, "signal": LIVE, "fork": ANY}
"""The statuses each action chooses among."""


@attrs.frozen
class Done:
    """What an action did to one instance, beyond ``ok``."""

    note: str | None
    fields: dict[str, str]
    """Added to the instance's JSON outcome."""


Action = Callable[[Admin, str], str | Done | None]
"""Acts on one instance; returns a note (or a :class:`Done`) for the outcome, raises
OperationRefused when the instance cannot take the action."""


@attrs.frozen
class Filter:
    status: records.InstanceStatus | None = None
    tenant: str | None = None
    queue: str | None = None
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None
    failed_after: dt.datetime | None = None
    error_contains: str | None = None

    def matches(self, instance: records.Instance) -> bool:
        """Every filter but the queue (which needs the instance's launch)."""
        if self.status is not None and instance.status is not self.status:
            return False
        if self.tenant is not None and instance.tenant_id != self.tenant:
            return False
        if self.created_after is not None and instance.created_at < self.created_after:
            return False
        if self.created_before is not None and instance.created_at > self.created_before:
            return False
        if self.failed_after is not None and (
            instance.status is not Status.FAILED
            or instance.finished_at is None
            or instance.finished_at < self.failed_after
        ):
            return False
        if self.error_contains is not None and self.error_contains not in (instance.error or ""):
            return False
        return True


@attrs.frozen
class Outcome:
    instance_id: str
    outcome: str
    """``ok``, ``refused`` or ``error``."""
    reason: str | None = None
    fields: dict[str, str] = attrs.field(factory=dict)
    """Added to its JSON line (``fork``: the new id and the checkpoint)."""

    def to_json(self) -> dict[str, object]:
        return {
            "instance_id": self.instance_id,
            "outcome": self.outcome,
            "reason": self.reason,
            **self.fields,
        }


def add_arguments(parser: common.Parser, *, with_json: bool = True) -> None:
    """The filters choosing instances instead of an id, and how to act on them;
    ``with_json`` False for a command whose own ``--json`` serves both."""
    group = parser.add_argument_group(
        "choosing instances by filters (instead of an id)",
        "Instances matching all the filters given are chosen first, then acted on in "
        f"batches of {BATCH}; more than {CONFIRM_ABOVE} need --yes.",
    )
    group.add_argument("--status", choices=[status.value for status in Status])
    group.add_argument("--tenant", help="instances of this tenant")
    group.add_argument("--queue", help="instances started in this queue")
    group.add_argument(
        "--created-after", metavar="TIME", help="created at or after TIME (ISO, or 2h: ago)"
    )
    group.add_argument(
        "--created-before", metavar="TIME", help="created at or before TIME (ISO, or 2h: ago)"
    )
    group.add_argument(
        "--failed-after", metavar="TIME", help="failed at or after TIME (ISO, or 2h: ago)"
    )
    group.add_argument("--error-contains", metavar="TEXT", help="whose error holds TEXT")
    group.add_argument(
        "--limit", type=common.positive, metavar="N", help="act on the first N chosen only"
    )
    group.add_argument(
        "--dry-run", action="store_true", help="list the instances chosen and change nothing"
    )
    group.add_argument(
        "--yes", action="store_true", help=f"act on more than {CONFIRM_ABOVE} instances"
    )
    if with_json:
        group.add_argument(
            "--json", action="store_true", help="one JSON object per instance, then a summary"
        )


_FILTERS = (
    "status",
    "tenant",
    "queue",
    "created_after",
    "created_before",
    "failed_after",
    "error_contains",
)
_BULK_ONLY = ("limit", "dry_run", "yes", "json")


def chosen(
    parser: common.Parser, arguments: argparse.Namespace, *, shared: Sequence[str] = ()
) -> Filter | None:
    """The filter the arguments give, or None when they name one instance; a usage
    error (exit 2) for both or neither. ``shared``: options of :data:`_BULK_ONLY`
    the command also takes with an id."""
    given = [name for name in _FILTERS if getattr(arguments, name) is not None]
    if arguments.instance is not None:
        if given:
            parser.error(
                "give an instance id or filters, not both "
                f"(--{given[0].replace('_', '-')} was given with {arguments.instance!r})"
            )
        extra = [name for name in _BULK_ONLY if name not in shared and getattr(arguments, name)]
        if extra:
            parser.error(f"--{extra[0].replace('_', '-')} goes with filters, not an instance id")
        return None
    if not given:
        parser.error("give an instance id, or at least one filter (--status, --tenant, ...)")

    def moment(name: str):
        value = getattr(arguments, name)
        return None if value is None else common.moment(value, f"--{name.replace('_', '-')}")

    return Filter(
        status=None if arguments.status is None else Status(arguments.status),
        tenant=arguments.tenant,
        queue=arguments.queue,
        created_after=moment("created_after"),
        created_before=moment("created_before"),
        failed_after=moment("failed_after"),
        error_contains=arguments.error_contains,
    )


def select(
    admin: Admin, wanted: Filter, applies: frozenset[Status], limit: int | None = None
) -> list[records.Instance]:
    """The instances matching ``wanted`` whose status is in ``applies``, newest first,
    at most ``limit``: read whole before anything is done to them."""
    statuses = [wanted.status] if wanted.status is not None else sorted(applies)
    found: dict[str, records.Instance] = {}
    for status in statuses:
        if status not in applies:
            continue
        for instance in _listed(admin, wanted, status):
            if instance.instance_id in found or not wanted.matches(instance):
                continue
            if wanted.queue is not None and _queue(admin, instance.instance_id) != wanted.queue:
                continue
            found[instance.instance_id] = instance
    ordered = sorted(found.values(), key=lambda i: (i.created_at, i.instance_id), reverse=True)
    return ordered if limit is None else ordered[:limit]


def _listed(admin: Admin, wanted: Filter, status: Status) -> Iterator[records.Instance]:
    cursor = None
    while True:
        # By cursor: each page read from the list's index where the last one ended
        # (an offset would read again every row before it); no count wanted.
        page = admin.list_instances(
            tenant_id=wanted.tenant, status=status, limit=PAGE, after=cursor, count_at_most=0
        )
        for instance in page.items:
            if wanted.created_after is not None and instance.created_at < wanted.created_after:
                return  # newest first: every later one is older still
            yield instance
        cursor = page.next_cursor
        if cursor is None:
            return


def _queue(admin: Admin, instance_id: str) -> str | None:
    details = admin.instance_details(instance_id, recent_events=0)
    if details is None or details.launch is None:
        return None
    return details.launch.queue


def act(
    admin: Admin, instance_ids: Sequence[str], action: Action, *, as_json: bool
) -> list[Outcome]:
    """Do ``action`` to each instance, in batches of :data:`BATCH`, printing each
    outcome as it comes."""
    width = max((len(instance_id) for instance_id in instance_ids), default=0)
    outcomes: list[Outcome] = []
    for start in range(0, len(instance_ids), BATCH):
        for instance_id in instance_ids[start : start + BATCH]:
            outcome = _one(admin, instance_id, action)
            outcomes.append(outcome)
            if as_json:
                print(render.to_json_line(outcome.to_json()))
            else:
                said = outcome.outcome + (f": {outcome.reason}" if outcome.reason else "")
                print(f"{instance_id.ljust(width)}  {said}")
        sys.stdout.flush()
        done = min(start + BATCH, len(instance_ids))
        if done < len(instance_ids):
            print(f"{done} of {len(instance_ids)} done", file=sys.stderr, flush=True)
    return outcomes


def _one(admin: Admin, instance_id: str, action: Action) -> Outcome:
    try:
        done = action(admin, instance_id)
    except errors.OperationRefused as refusal:
        return Outcome(instance_id, "refused", str(refusal))
    except (errors.StorageError, errors.ClientError, errors.RequestError) as error:
        return Outcome(instance_id, "error", str(error))
    if isinstance(done, Done):
        return Outcome(instance_id, "ok", done.note, dict(done.fields))
    return Outcome(instance_id, "ok", done)


def run(
    arguments: argparse.Namespace,
    wanted: Filter,
    verb: str,
    action: Action,
    *,
    applies: frozenset[Status],
    after: Callable[[Admin, list[Outcome]], None] | None = None,
) -> int:
    """Choose, check the count, then act (or list, with ``--dry-run``); the exit code."""
    with common.open_admin(arguments) as admin:
        instances = select(admin, wanted, applies, arguments.limit)
        if arguments.dry_run:
            _list(instances, verb, arguments.json)
            return 0
        if not instances:
            _summary([], verb, arguments.json)
            return 0
        if len(instances) > CONFIRM_ABOVE and not arguments.yes:
            raise errors.ConfigError(
                f"{len(instances)} instances match: add --yes to {verb} them all, "
                "or --dry-run to list them"
            )
        outcomes = act(admin, [i.instance_id for i in instances], action, as_json=arguments.json)
        if after is not None:
            after(admin, outcomes)
    _summary(outcomes, verb, arguments.json)
    return 0 if all(outcome.outcome == "ok" for outcome in outcomes) else 1


def _list(instances: list[records.Instance], verb: str, as_json: bool) -> None:
    if as_json:
        for instance in instances:
            print(
                render.to_json_line(
                    {
                        "instance_id": instance.instance_id,
                        "status": instance.status.value,
                        "tenant_id": instance.tenant_id,
                        "created_at": instance.created_at,
                        "error": instance.error,
                    }
                )
            )
        print(render.to_json_line({"summary": {"dry_run": True, "matched": len(instances)}}))
        return
    rows = [
        (
            i.instance_id,
            i.status.value,
            i.tenant_id,
            render.when(i.created_at),
            _line(i.error),
        )
        for i in instances
    ]
    if rows:
        print(render.table(("ID", "STATUS", "TENANT", "CREATED", "ERROR"), rows))
    print(f"dry run: {len(instances)} instance{'s' * (len(instances) != 1)} would be {_done(verb)}")


def _summary(outcomes: list[Outcome], verb: str, as_json: bool) -> None:
    counts = {kind: 0 for kind in ("ok", "refused", "error")}
    for outcome in outcomes:
        counts[outcome.outcome] += 1
    if as_json:
        print(render.to_json_line({"summary": {"matched": len(outcomes), **counts}}))
    elif not outcomes:
        print(f"no instance matches: nothing {_done(verb)}")
    else:
        print(
            f"{verb}: {counts['ok']} ok, {counts['refused']} refused, {counts['error']} errors "
            f"of {len(outcomes)}"
        )


def _done(verb: str) -> str:
    return {"retry": "retried", "stop": "stopped", "fork": "forked"}.get(verb, f"sent {verb}")


def _line(error: str | None) -> str:
    if not error:
        return "-"
    first = error.strip().splitlines()[0] if error.strip() else "-"
    return first if len(first) <= 60 else first[:57] + "..."


# --- the actions -------------------------------------------------------------------


def retry(
    arguments: argparse.Namespace, wanted: Filter, env: dict[str, str], payload: bytes | None
) -> int:
    def one(admin: Admin, instance_id: str) -> None:
        admin.retry_instance(instance_id, env, payload)

    return run(arguments, wanted, "retry", one, applies=RETRYABLE)


def fork(
    arguments: argparse.Namespace, wanted: Filter, env: dict[str, str], payload: bytes | None
) -> int:
    """Fork each from its latest checkpoint, as a new instance with a new id; each
    instance chosen is left as it was (so a rerun forks them again)."""

    def one(admin: Admin, instance_id: str) -> Done:
        new_id, checkpoint = admin.fork_instance(instance_id, None, None, env, payload)
        return Done(
            f"forked as {new_id} from {checkpoint}",
            {"new_instance_id": new_id, "checkpoint": checkpoint},
        )

    return run(arguments, wanted, "fork", one, applies=ANY)


def signal(
    arguments: argparse.Namespace, wanted: Filter, kind: records.SignalType, payload: bytes
) -> int:
    def one(admin: Admin, instance_id: str) -> None:
        admin.send_signal(instance_id, kind, payload)

    return run(arguments, wanted, kind.value, one, applies=LIVE)


def stop(arguments: argparse.Namespace, wanted: Filter, grace: float) -> int:
    """Cancel each; past the grace, a launcher terminates the processes it watches, and
    those no launcher watches are recorded cancelled here."""
    unwatched: list[str] = []

    def one(admin: Admin, instance_id: str) -> str | None:
        if admin.stop_instance(instance_id, grace):
            return None
        unwatched.append(instance_id)
        return None

    def after(admin: Admin, outcomes: list[Outcome]) -> None:
        waiting = [i for i in unwatched if not _ended(admin, i)]
        if not waiting:
            return
        print(
            f"waiting up to {grace:g}s for {len(waiting)} instances no launcher runs",
            file=sys.stderr,
            flush=True,
        )
        deadline = time.monotonic() + grace
        while waiting and time.monotonic() < deadline:
            time.sleep(POLL)
            waiting = [i for i in waiting if not _ended(admin, i)]
        reason = (
            f"stopped: the instance did not end within {grace:g}s of the cancel "
            "(no launcher runs its process: it may still be running)"
        )
        for instance_id in waiting:
            admin.give_up_stop(instance_id, reason)

    return run(arguments, wanted, "stop", one, applies=LIVE, after=after)


def _ended(admin: Admin, instance_id: str) -> bool:
    details = admin.instance_details(instance_id, recent_events=0)
    return details is None or details.instance.status.is_terminal
