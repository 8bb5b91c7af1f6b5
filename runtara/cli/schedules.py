"""``schedule``: start an instance at every tick of a cron expression or an interval."""

from __future__ import annotations

from collections.abc import Sequence

from runtara import config, errors, records
from runtara.cli import common, launching, render

OVERLAPS = ("skip", "allow", "cancel-previous")
CATCH_UPS = ("none", "one", "all")


def schedule(argv: Sequence[str]) -> int:
    parser = common.command_parser(
        "schedule",
        "Durable schedules: each tick starts exactly one instance (id NAME@TIME, "
        "RUNTARA_SCHEDULED_AT in its environment, scheduled_at in its input), whichever "
        "servers share the database.",
    )
    actions = parser.add_subparsers(dest="action", required=True, parser_class=common.Parser)
    adding = actions.add_parser(
        "add",
        help="create a schedule",
        usage=f"{common.PROG} schedule add NAME (--cron EXPR | --every DURATION) [OPTIONS] "
        "-- COMMAND [ARG...]",
    )
    adding.add_argument("name", help="schedule name")
    when = adding.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", metavar="EXPR", help="a cron expression: '0 3 * * *'")
    when.add_argument(
        "--every", metavar="DURATION", type=common.checked(config.duration), help="30s, 1h"
    )
    adding.add_argument("--timezone", default="UTC", help="the cron expression's zone (UTC)")
    adding.add_argument(
        "--overlap",
        choices=OVERLAPS,
        default="skip",
        help="a tick while the previous tick's instance runs: skip it (default), allow "
        "both, or cancel the previous",
    )
    adding.add_argument(
        "--catch-up",
        choices=CATCH_UPS,
        default="one",
        help="ticks missed while no server ran: start none, one (the latest; default) or all",
    )
    adding.add_argument("--tenant", default=launching.DEFAULT_TENANT, help="tenant (default)")
    launching.launch_arguments(adding)
    adding.add_argument("--replace", action="store_true", help="replace a schedule of that name")
    adding.add_argument("command", nargs="+", help="the program to run, and its arguments")
    listing = actions.add_parser("list", help="every schedule with its next tick")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    showing = actions.add_parser("show", help="one schedule")
    showing.add_argument("name", help="schedule name")
    showing.add_argument("--json", action="store_true", help="print JSON")
    for action, text in (
        ("pause", "start nothing until resumed (missed ticks are not caught up)"),
        ("resume", "tick again from now"),
        ("remove", "delete the schedule (its instances stay)"),
        ("trigger", "start one instance now"),
    ):
        actions.add_parser(action, help=text).add_argument("name", help="schedule name")
    for each in actions.choices.values():
        common.add_target_arguments(each)
    if argv[:1] == ["add"]:
        launching.require_dashes(adding, argv[1:], leading=1)
    arguments = parser.parse_args(argv)
    with common.open_admin(arguments) as admin:
        return _act(admin, arguments)


def _act(admin, arguments) -> int:
    action = arguments.action
    if action == "add":
        payload = None
        if arguments.input is not None:
            payload = launching.checked_input(launching.read_input(arguments.input))
        added = admin.add_schedule(
            arguments.name,
            cron=arguments.cron,
            every=arguments.every,
            timezone=arguments.timezone,
            overlap=arguments.overlap,
            catch_up=arguments.catch_up,
            tenant_id=arguments.tenant,
            spec=launching.launch_spec(arguments),
            payload=payload,
            replace=arguments.replace,
        )
        print(f"schedule {added.name}: next tick {render.when(added.next_tick_at)}")
    elif action == "list":
        found = admin.list_schedules()
        print(render.to_json(found) if arguments.json else _table(found))
    elif action == "show":
        found = {each.name: each for each in admin.list_schedules()}
        if arguments.name not in found:
            raise errors.OperationRefused(f"Schedule '{arguments.name}' not found")
        shown = found[arguments.name]
        print(render.to_json(shown) if arguments.json else _fields(shown))
    elif action in ("pause", "resume"):
        changed = admin.pause_schedule(arguments.name, action == "pause")
        state = "paused" if changed.paused else f"next tick {render.when(changed.next_tick_at)}"
        print(f"schedule {changed.name}: {state}")
    elif action == "remove":
        admin.remove_schedule(arguments.name)
        print(f"schedule {arguments.name} removed")
    else:
        print(admin.trigger_schedule(arguments.name))
    return 0


def _when(schedule: records.Schedule) -> str:
    if schedule.cron is not None:
        return f"cron {schedule.cron} ({schedule.timezone})"
    return f"every {schedule.every:g}s"


def _table(found: list[records.Schedule]) -> str:
    rows = [
        [
            each.name,
            _when(each),
            "paused" if each.paused else render.when(each.next_tick_at),
            str(each.ticks),
            str(each.skipped),
            each.last_instance_id or "-",
        ]
        for each in found
    ]
    return render.table(["SCHEDULE", "WHEN", "NEXT TICK", "STARTED", "SKIPPED", "LAST"], rows)


def _fields(schedule: records.Schedule) -> str:
    fields = [
        ("schedule", schedule.name),
        ("when", _when(schedule)),
        ("overlap", schedule.overlap),
        ("catch-up", schedule.catch_up),
        ("next tick", "paused" if schedule.paused else render.when(schedule.next_tick_at)),
        ("last tick", render.when(schedule.last_tick_at)),
        ("last instance", schedule.last_instance_id or "-"),
        ("started", str(schedule.ticks)),
        ("skipped", str(schedule.skipped)),
        ("tenant", schedule.tenant_id),
        ("spec", schedule.spec),
    ]
    width = max(len(name) for name, _ in fields)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in fields)
