"""``signal`` and ``custom-signal``: what an operator sends to a live instance."""

from __future__ import annotations

from collections.abc import Sequence

from runtara import records
from runtara.cli import bulk, common


def signal(argv: Sequence[str]) -> int:
    parser = common.command_parser(
        "signal",
        "Send cancel, pause or resume to an instance; it replaces any pending "
        "signal, and the instance sees it on its next Checkpoint or PollSignals. With "
        "filters instead of an id, to every live instance they match.",
    )
    parser.add_argument("instance", nargs="?", help="instance id (or filters, below)")
    parser.add_argument("kind", choices=[kind.value for kind in records.SignalType])
    parser.add_argument("--payload", help="TEXT, or @FILE for a file's bytes")
    bulk.add_arguments(parser)
    common.add_target_arguments(parser)
    arguments = parser.parse_args(argv)
    wanted = bulk.chosen(parser, arguments)
    data = common.payload(arguments.payload)
    if wanted is not None:
        return bulk.signal(arguments, wanted, records.SignalType(arguments.kind), data)
    with common.open_admin(arguments) as admin:
        admin.send_signal(arguments.instance, records.SignalType(arguments.kind), data)
    print(f"{arguments.kind} sent to {arguments.instance}")
    return 0


def custom_signal(argv: Sequence[str]) -> int:
    parser = common.command_parser(
        "custom-signal",
        "Send a signal for one checkpoint id of an instance; the instance takes "
        "it once, on a Checkpoint of that id or a PollSignals naming it.",
    )
    parser.add_argument("instance", help="instance id")
    parser.add_argument("checkpoint_id", help="checkpoint id the signal is for")
    parser.add_argument("--payload", help="TEXT, or @FILE for a file's bytes")
    common.add_target_arguments(parser)
    arguments = parser.parse_args(argv)
    data = common.payload(arguments.payload)
    with common.open_admin(arguments) as admin:
        admin.send_custom_signal(arguments.instance, arguments.checkpoint_id, data)
    print(f"custom signal for {arguments.checkpoint_id} sent to {arguments.instance}")
    return 0
