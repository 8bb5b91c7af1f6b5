"""The ``runtara-core`` command.

``runtara-core [FLAGS]`` serves; ``runtara-core COMMAND ...`` runs a tool.
Every flag falls back to its environment variable, then to its default;
``--help`` lists the commands and the flags with their variables.

Exit codes: 0 done; 1 the operation failed (unknown or finished instance,
unreachable storage or server, refused token, untrusted server); 2 bad usage
or configuration (an unknown command, a bad value, an argument that is not
UTF-8 text where text is needed); 130 interrupted (Ctrl-C); 141 the output's
reader went away (``| head``). None of these prints a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

import attrs

from runtara import errors
from runtara.cli import (
    bench,
    common,
    completion,
    health,
    inspect,
    launching,
    queues,
    schedules,
    serve,
    signals,
    storage,
)

INTERRUPTED = 130
"""Exit code after Ctrl-C (128 + SIGINT), as shells report it."""
OUTPUT_CLOSED = 141
"""Exit code when the output's reader went away (128 + SIGPIPE), as shells report it."""


@attrs.frozen
class Command:
    run: Callable[[Sequence[str]], int]
    summary: str
    """One line for ``runtara-core --help``."""


COMMANDS: dict[str, Command] = {
    "serve": Command(
        lambda argv: serve.serve(argv, summaries()),
        "serve the instance protocol (the default)",
    ),
    "migrate": Command(storage.migrate, "apply pending schema migrations"),
    "drivers": Command(storage.drivers, "list the installed storage drivers"),
    "prune": Command(storage.prune, "delete finished instances with everything they own"),
    "health": Command(health.health, "check that the server or the storage answers"),
    "stats": Command(health.stats, "print a running server's counters (needs --server)"),
    "signal": Command(signals.signal, "send cancel, pause or resume to an instance"),
    "custom-signal": Command(
        signals.custom_signal, "send a signal for one checkpoint id of an instance"
    ),
    "instances": Command(inspect.instances, "list instances, newest first"),
    "show": Command(inspect.show, "show one instance: status, times, signals, events"),
    "checkpoints": Command(inspect.checkpoints, "list an instance's checkpoints, or get one"),
    "events": Command(inspect.events, "list an instance's events, or --follow them"),
    "start": Command(launching.start, "store an instance for the server's launcher to run"),
    "retry": Command(
        launching.retry, "go on with a failed or cancelled instance from its checkpoints"
    ),
    "fork": Command(
        launching.fork, "run a new instance again from a checkpoint of another, copied"
    ),
    "stop": Command(launching.stop, "cancel an instance, terminating its process past a grace"),
    "queue": Command(queues.queue, "set, list, pause and resume the queues instances start in"),
    "schedule": Command(schedules.schedule, "start an instance at every tick of a schedule"),
    "logs": Command(launching.logs_command, "print a launched instance's stdout and stderr"),
    "bench": Command(bench.bench, "measure throughput and latency against baselines"),
    "completion": Command(
        lambda argv: completion.completion(argv, {n: c.run for n, c in COMMANDS.items()}),
        'print a shell completion script: eval "$(runtara-core completion bash)"',
    ),
    "help": Command(lambda argv: _help(argv), "this help, or a command's: help COMMAND"),
}


def summaries() -> dict[str, str]:
    return {name: command.summary for name, command in COMMANDS.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command ``argv`` names (``sys.argv`` without the program by
    default) and return the exit code (see the module)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        code = _dispatch(argv)
        sys.stdout.flush()  # a closed pipe must fail here, not at exit
        return code
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:
        _discard_output()
        return OUTPUT_CLOSED
    except (errors.ConfigError, errors.DriverError) as error:
        return _fail(str(error), 2)
    except (errors.OperationRefused, errors.StorageError, errors.ClientError) as error:
        return _fail(str(error), 1)
    except UnicodeEncodeError as error:
        # An argument that is not UTF-8 (Python keeps its bytes as surrogates)
        # reached something that needs text: an id, a name, a filter.
        shown = os.fsencode(error.object).decode("ascii", "backslashreplace")
        return _fail(
            f"'{shown}' is not UTF-8 text, which ids, names and filters must be "
            "(only --payload takes any bytes)",
            2,
        )


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        return COMMANDS["serve"].run(argv)
    name = argv.pop(0)
    command = COMMANDS.get(name)
    if command is None:
        hint = common.did_you_mean(name, list(COMMANDS)) or f"`{common.PROG} --help` lists them"
        return _fail(f"unknown command {name!r}; {hint}", 2)
    return command.run(argv)


def _help(argv: Sequence[str]) -> int:
    parser = common.command_parser("help", "Show the help, or a command's help.")
    parser.add_argument("command", nargs="?", choices=list(COMMANDS), help="a command")
    name = parser.parse_args(argv).command
    return _dispatch([name, "--help"] if name else ["--help"])


def _fail(message: str, code: int) -> int:
    print(f"{common.PROG}: error: {message}", file=sys.stderr)
    return code


def _discard_output() -> None:
    """The reader of stdout is gone: send what is left to /dev/null, so that the
    interpreter's last flush at exit does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
