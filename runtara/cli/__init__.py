"""The ``runtara-core`` command.

``runtara-core [FLAGS]`` serves; ``runtara-core COMMAND ...`` runs a tool.
Every flag falls back to its environment variable, then to its default;
``--help`` lists both. Exit codes: 0 done, 1 the operation failed (unknown or
finished instance, unreachable storage or server), 2 bad usage or
configuration.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from runtara import errors
from runtara.cli import bench, common, health, inspect, launching, serve, signals, storage

COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "serve": lambda argv: serve.serve(argv, list(COMMANDS)),
    "migrate": storage.migrate,
    "drivers": storage.drivers,
    "prune": storage.prune,
    "health": health.health,
    "signal": signals.signal,
    "custom-signal": signals.custom_signal,
    "instances": inspect.instances,
    "show": inspect.show,
    "checkpoints": inspect.checkpoints,
    "events": inspect.events,
    "start": launching.start,
    "stop": launching.stop,
    "logs": launching.logs_command,
    "bench": bench.bench,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = "serve"
    if argv and argv[0] in COMMANDS:
        command = argv.pop(0)
    try:
        return COMMANDS[command](argv)
    except (errors.ConfigError, errors.DriverError) as error:
        print(f"{common.PROG}: error: {error}", file=sys.stderr)
        return 2
    except (errors.OperationRefused, errors.StorageError, errors.ClientError) as error:
        print(f"{common.PROG}: error: {error}", file=sys.stderr)
        return 1
