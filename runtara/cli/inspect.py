"""``instances``, ``show``, ``checkpoints`` and ``events``."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NoReturn

import attrs

from runtara import errors, records
from runtara.admin.base import Admin
from runtara.cli import common, render
from runtara.launcher.spec import LaunchSpec

FOLLOW_POLL = 0.5
"""Seconds between two looks for new events with ``events --follow``."""
FOLLOW_PAGE = 100
COUNTED = 10_000
"""``instances`` counts the matching instances up to this many."""


def _parser(name: str, description: str) -> common.Parser:
    parser = common.Parser(prog=f"{common.PROG} {name}", description=description)
    common.add_target_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def _paging(parser: common.Parser) -> None:
    parser.add_argument("--limit", type=common.positive, default=50, help="rows per page (50)")
    parser.add_argument("--offset", type=int, default=0, help="rows to skip (0)")


def instances(argv: Sequence[str]) -> int:
    parser = _parser("instances", "List instances, newest first.")
    parser.add_argument("--tenant", help="only this tenant's instances")
    parser.add_argument(
        "--status",
        choices=[status.value for status in records.InstanceStatus],
        help="only this status",
    )
    _paging(parser)
    parser.add_argument(
        "--after",
        metavar="CURSOR",
        help="the page after this cursor (the next page's command is printed below a page)",
    )
    arguments = parser.parse_args(argv)
    if arguments.after is not None and arguments.offset:
        parser.error("--after and --offset choose the page two ways: give one")
    with common.open_admin(arguments) as admin:
        page = admin.list_instances(
            tenant_id=arguments.tenant,
            status=records.InstanceStatus(arguments.status) if arguments.status else None,
            limit=arguments.limit,
            offset=arguments.offset,
            after=arguments.after,
            count_at_most=COUNTED + 1,
        )
        if arguments.json:
            print(render.to_json(page))
            return 0
        waits = _wait_reasons(admin, page.items)
    rows = [
        [
            i.instance_id,
            i.tenant_id,
            i.status.value,
            render.when(i.created_at),
            render.when(i.finished_at),
            i.checkpoint_id or "-",
            render.when(i.last_activity_at),
        ]
        + ([waits.get(i.instance_id) or "-"] if waits else [])
        for i in page.items
    ]
    if rows:
        headers = ["INSTANCE", "TENANT", "STATUS", "CREATED", "FINISHED", "CHECKPOINT"]
        headers.append("LAST ACTIVITY")
        print(render.table(headers + (["WAITING FOR"] if waits else []), rows))
    print(_footer(page, arguments))
    if page.next_cursor is not None:
        # on standard error: the listing on standard output stays a table and its footer
        print(
            f"next page: the same command with --after {shlex.quote(page.next_cursor)}",
            file=sys.stderr,
        )
    return 0


def _footer(page, arguments: argparse.Namespace) -> str:
    """How many are shown of how many (``more than 10,000`` past the count's cap)."""
    total = f"more than {COUNTED:,}" if page.total > COUNTED else str(page.total)
    if arguments.after is None:
        line = render.page_footer(len(page.items), arguments.offset, page.total, "instances")
        line = line.replace(f"of {page.total}", f"of {total}").replace(
            f"are {page.total}", f"are {total}"
        )
    elif not page.items:
        line = f"no instances after the cursor (there are {total})"
    else:
        line = f"{len(page.items)} instances after the cursor, of {total}"
    return line


def _wait_reasons(admin, shown: list[records.Instance]) -> dict[str, str]:
    """Why each pending instance shown waits (one look each: pending ones only)."""
    reasons = {}
    for instance in shown:
        if instance.status is records.InstanceStatus.PENDING:
            details = admin.instance_details(instance.instance_id, recent_events=0)
            if details is not None and details.wait_reason is not None:
                reasons[instance.instance_id] = details.wait_reason
    return reasons


def show(argv: Sequence[str]) -> int:
    parser = _parser("show", "Show one instance: status, times, signals, output or error, events.")
    parser.add_argument("instance", help="instance id")
    parser.add_argument("--events", type=int, default=10, help="how many recent events (10)")
    arguments = parser.parse_args(argv)
    with common.open_admin(arguments) as admin:
        details = admin.instance_details(arguments.instance, arguments.events)
    if details is None:
        raise errors.OperationRefused(f"Instance '{arguments.instance}' not found")
    if details.launch is not None:
        details = attrs.evolve(details, launch=attrs.evolve(details.launch, input=None))
    if arguments.json:
        print(render.to_json(details))
        return 0
    instance = details.instance
    signal = details.pending_signal
    fields = [
        ("instance", instance.instance_id),
        ("tenant", instance.tenant_id),
        ("status", instance.status.value),
        ("created", render.when(instance.created_at)),
        ("started", render.when(instance.started_at)),
        ("finished", render.when(instance.finished_at)),
        ("last activity", render.when(instance.last_activity_at)),
        ("last checkpoint", instance.checkpoint_id or "-"),
        ("sleep until", render.when(instance.sleep_until)),
        (
            "pending signal",
            f"{signal.signal_type.value} {render.preview(signal.payload)} "
            f"(since {render.when(signal.created_at)})"
            if signal
            else "-",
        ),
        (
            "custom signals",
            ", ".join(
                f"{s.checkpoint_id} {render.preview(s.payload, 30)}" for s in details.custom_signals
            )
            or "-",
        ),
    ]
    if instance.output is not None:
        fields.append(("output", render.preview(instance.output, 200)))
    if instance.error is not None:
        fields.append(("error", instance.error))
    if details.launch is not None:
        fields += _launch_fields(details.launch)
    if details.wait_reason is not None:
        fields.append(("waiting", details.wait_reason))
    if details.children:
        fields.append(("children", ", ".join(details.children)))
    width = max(len(name) for name, _ in fields)
    print("\n".join(f"{name.ljust(width)}  {value}" for name, value in fields))
    if details.recent_events:
        print(f"\nrecent events (newest first):\n{_events_table(details.recent_events)}")
    return 0


def _launch_fields(launch: records.Launch) -> list[tuple[str, str]]:
    """Where the launch and its restart policy stand."""
    try:
        command = shlex.join(LaunchSpec.from_json(launch.spec).command)
    except errors.ConfigError as error:
        command = f"(none that can run: {error})"
    queue = launch.queue + ("" if launch.key is None else f", key {launch.key}")
    if launch.priority:
        queue += f", priority {launch.priority}"
    process = "-"
    if launch.pid is not None and launch.claimed_by is not None:
        process = f"pid {launch.pid} on {launch.host} (since {render.when(launch.launched_at)})"
    next_launch = render.when(launch.next_launch_at)
    if launch.next_launch_at is not None and launch.failures:
        next_launch += f" (back-off after {launch.failures} failure(s) in a row)"
    origin = []
    if launch.origin_instance is not None:
        origin = [("forked from", f"{launch.origin_instance} at {launch.origin_checkpoint}")]
    if launch.parent_instance is not None:
        origin.append(
            ("parent", f"{launch.parent_instance} (on its cancel: {launch.on_parent_cancel})")
        )
    return [
        *origin,
        ("command", command),
        ("queue", queue),
        ("launches", str(launch.attempt)),
        (
            "failures in a row",
            f"{launch.failures} of {launch.max_failures} (without progress)",
        ),
        ("process", process),
        ("last attempt", launch.last_exit or "-"),
        ("next launch", next_launch),
    ]


def checkpoints(argv: Sequence[str]) -> int:
    parser = _parser("checkpoints", "List an instance's checkpoints, newest first, or get one.")
    parser.add_argument("instance", help="instance id")
    parser.add_argument("--get", metavar="ID", help="write this checkpoint's state instead")
    parser.add_argument(
        "--output", metavar="FILE", help="with --get: write the state here, not to stdout"
    )
    _paging(parser)
    arguments = parser.parse_args(argv)
    with common.open_admin(arguments) as admin:
        if arguments.get is not None:
            return _write_state(admin, arguments)
        page = admin.list_checkpoints(
            arguments.instance, limit=arguments.limit, offset=arguments.offset
        )
    if arguments.json:
        print(render.to_json(page))
        return 0
    rows = [[c.checkpoint_id, render.size(c.size), render.when(c.created_at)] for c in page.items]
    if rows:
        print(render.table(["CHECKPOINT", "SIZE", "CREATED"], rows))
    print(render.page_footer(len(rows), arguments.offset, page.total, "checkpoints"))
    return 0


def _write_state(admin: Admin, arguments: argparse.Namespace) -> int:
    checkpoint = admin.get_checkpoint(arguments.instance, arguments.get)
    if checkpoint is None:
        raise errors.OperationRefused(
            f"Instance '{arguments.instance}' has no checkpoint '{arguments.get}'"
        )
    if arguments.json:
        print(render.to_json(checkpoint))
    elif arguments.output:
        Path(arguments.output).write_bytes(checkpoint.state)
    else:
        sys.stdout.buffer.write(checkpoint.state)
        sys.stdout.flush()
    return 0


def events(argv: Sequence[str]) -> int:
    parser = _parser(
        "events",
        "List an instance's events, newest first; with --follow, the last ones oldest "
        "first, then each new one as it is recorded, until Ctrl-C.",
    )
    parser.add_argument("instance", help="instance id")
    parser.add_argument(
        "--type", choices=[kind.value for kind in records.EventType], help="only this event type"
    )
    parser.add_argument("--subtype", help="only this subtype")
    parser.add_argument(
        "--after", metavar="TIME", help="only from this ISO time, or this long ago (2h)"
    )
    parser.add_argument(
        "--before", metavar="TIME", help="only before this ISO time, or this long ago"
    )
    parser.add_argument(
        "--contains", metavar="TEXT", help="only payloads containing this text (any case)"
    )
    parser.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="print the last --limit events oldest first, then each new one as it is "
        "recorded, until Ctrl-C (with --json: one JSON object a line)",
    )
    _paging(parser)
    arguments = parser.parse_args(argv)
    if arguments.follow and arguments.offset:
        parser.error("--follow starts from the newest events: it takes no --offset")
    event_filter = records.EventFilter(
        event_type=records.EventType(arguments.type) if arguments.type else None,
        subtype=arguments.subtype,
        created_after=common.moment(arguments.after, "--after") if arguments.after else None,
        created_before=common.moment(arguments.before, "--before") if arguments.before else None,
        payload_contains=arguments.contains,
    )
    with common.open_admin(arguments) as admin:
        if arguments.follow:
            _follow(admin, arguments.instance, event_filter, arguments.limit, arguments.json)
        page = admin.list_events(
            arguments.instance, event_filter, limit=arguments.limit, offset=arguments.offset
        )
    if arguments.json:
        print(render.to_json(page))
        return 0
    if page.items:
        print(_events_table(page.items))
    print(render.page_footer(len(page.items), arguments.offset, page.total, "events"))
    return 0


def _follow(
    admin: Admin,
    instance_id: str,
    event_filter: records.EventFilter,
    limit: int,
    as_json: bool,
) -> NoReturn:
    """Print the newest ``limit`` events, then every new one, oldest first, as
    lines; it ends only by an exception (Ctrl-C, a closed output, a failure)."""
    show: Callable[[records.Event], str] = render.to_json_line if as_json else _event_line
    newest = admin.list_events(instance_id, event_filter, limit=limit, offset=0).items
    if not as_json:
        print(_EVENT_LINE.format("ID", "TIME", "TYPE", "SUBTYPE", "CHECKPOINT", "PAYLOAD"))
    seen: set[int] = set()
    while True:
        for event in sorted(newest, key=lambda event: (event.created_at, event.id)):
            seen.add(event.id)
            print(show(event), flush=True)
        time.sleep(FOLLOW_POLL)
        newest = list(_unseen(admin, instance_id, event_filter, seen))


def _unseen(
    admin: Admin, instance_id: str, event_filter: records.EventFilter, seen: set[int]
) -> Iterable[records.Event]:
    """The events not in ``seen``, newest first, page by page down to a seen one."""
    offset = 0
    while True:
        page = admin.list_events(instance_id, event_filter, limit=FOLLOW_PAGE, offset=offset)
        fresh = [event for event in page.items if event.id not in seen]
        yield from fresh
        if len(fresh) < len(page.items) or len(page.items) < FOLLOW_PAGE:
            return
        offset += FOLLOW_PAGE


_EVENT_LINE = "{:<6}  {:<24}  {:<9}  {:<12}  {:<16}  {}"
"""A followed event's line: the columns of the events table, at fixed widths."""


def _event_line(event: records.Event) -> str:
    return _EVENT_LINE.format(
        event.id,
        render.when(event.created_at),
        event.event_type.value,
        event.subtype or "-",
        event.checkpoint_id or "-",
        render.preview(event.payload),
    )


def _events_table(events: Sequence[records.Event]) -> str:
    return render.table(
        ["ID", "TIME", "TYPE", "SUBTYPE", "CHECKPOINT", "PAYLOAD"],
        [
            [
                str(e.id),
                render.when(e.created_at),
                e.event_type.value,
                e.subtype or "-",
                e.checkpoint_id or "-",
                render.preview(e.payload),
            ]
            for e in events
        ],
    )
