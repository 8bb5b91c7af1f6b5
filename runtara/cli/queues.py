"""``queue``: the limits on when instances of a queue are launched."""

from __future__ import annotations

from collections.abc import Sequence

from runtara import config, records
from runtara.cli import common, render
from runtara.records import UNCHANGED

NO_LIMIT = "none"


def queue(argv: Sequence[str]) -> int:
    parser = common.command_parser(
        "queue",
        "Set, list, pause and resume the queues that instances are started in "
        "(start --queue). Limits hold for every server on the database, at once.",
    )
    actions = parser.add_subparsers(dest="action", required=True, parser_class=common.Parser)
    setting = actions.add_parser("set", help="change a queue's limits")
    setting.add_argument("name", help="queue name")
    for option, meaning in (
        ("--concurrency", "at most N of its instances running at once"),
        ("--per-key", "at most N running at once per concurrency key (start --key)"),
    ):
        setting.add_argument(
            option, type=common.checked(_count), default=UNCHANGED, metavar="N|none", help=meaning
        )
    setting.add_argument(
        "--rate",
        type=common.checked(_rate),
        default=UNCHANGED,
        metavar="N/DURATION|none",
        help="at most N launches in any DURATION (10/1m)",
    )
    listing = actions.add_parser("list", help="every queue: limits, running, waiting")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    for action, text in (("pause", "launch nothing more of it"), ("resume", "launch again")):
        actions.add_parser(action, help=text).add_argument("name", help="queue name")
    for each in actions.choices.values():
        common.add_target_arguments(each)
    arguments = parser.parse_args(argv)
    with common.open_admin(arguments) as admin:
        if arguments.action == "list":
            views = admin.list_queues()
            print(render.to_json(views) if arguments.json else _table(views))
            return 0
        if arguments.action == "set":
            changed = admin.set_queue(
                arguments.name,
                concurrency=arguments.concurrency,
                per_key=arguments.per_key,
                rate=arguments.rate,
            )
        else:
            changed = admin.set_queue(arguments.name, paused=arguments.action == "pause")
    print(f"queue {changed.name}: {describe_limits(changed)}")
    return 0


def _count(raw: str) -> int | None:
    if raw == NO_LIMIT:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{raw!r} is not a count of 1 or more, nor {NO_LIMIT}")
    return value


def _rate(raw: str) -> tuple[int, float] | None:
    if raw == NO_LIMIT:
        return None
    count, slash, period = raw.partition("/")
    if not slash:
        raise ValueError(f"{raw!r} is not N/DURATION (10/1m), nor {NO_LIMIT}")
    return _count(count), config.duration(period)


def describe_limits(queue: records.Queue) -> str:
    parts = [
        f"concurrency {queue.concurrency or NO_LIMIT}",
        f"per key {queue.per_key or NO_LIMIT}",
        "rate "
        + (NO_LIMIT if queue.rate_limit is None else f"{queue.rate_limit}/{queue.rate_period:g}s"),
    ]
    if queue.paused:
        parts.append("paused")
    return ", ".join(parts)


def _table(views: list[records.QueueView]) -> str:
    rows = [
        [
            view.queue.name,
            str(view.figures.running),
            str(view.figures.due),
            str(view.figures.later),
            describe_limits(view.queue),
        ]
        for view in views
    ]
    return render.table(["QUEUE", "RUNNING", "DUE", "LATER", "LIMITS"], rows)
