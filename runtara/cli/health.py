"""``health``: is the server (with --server) or the storage answering? ``stats``:
the running server's counters."""

from __future__ import annotations

import json
from collections.abc import Sequence

from runtara import errors
from runtara.cli import common


def stats(argv: Sequence[str]) -> int:
    parser = common.command_parser(
        "stats",
        "Print a running server's counters (GetStats), one a line: "
        "requests, connections, admission, storage; with --processes, the whole "
        "server's sums and each process's own (process.N.name), such as how many "
        "connections each was given (process.N.connections_opened). Asks the server "
        "running on this machine, or --server.",
    )
    common.add_target_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    arguments = parser.parse_args(argv)
    with common.open_admin(arguments) as admin:
        counters = dict(sorted(admin.stats().items()))
    if arguments.json:
        print(json.dumps(counters, indent=2))
        return 0
    width = max(map(len, counters), default=0)
    for name, value in counters.items():
        shown = f"{value:.0f}" if value == int(value) else f"{value:.3f}"
        print(f"{name:<{width}}  {shown}")
    return 0


def health(argv: Sequence[str]) -> int:
    parser = common.command_parser(
        "health",
        "Exit 0 if the server answers (the one running on this machine, or "
        "--server) or the store is reachable (--database-url), 1 otherwise, with one line "
        "saying which.",
    )
    common.add_target_arguments(parser)
    arguments = parser.parse_args(argv)
    try:
        admin = common.open_admin(arguments)
    except (errors.StorageError, errors.OperationRefused) as error:  # nothing to ask
        print(f"unhealthy: {error}")
        return 1
    with admin:
        try:
            print(admin.health())
        except (errors.StorageError, errors.ClientError) as error:
            print(f"unhealthy: {admin.describe()}: {error}")
            return 1
    return 0
