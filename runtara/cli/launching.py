"""``start``, ``retry``, ``fork``, ``stop`` and ``logs``: running instances with the server's
launcher."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from runtara import clock, config, errors, records
from runtara.cli import bulk, common
from runtara.launcher import both_logs, logs
from runtara.launcher.spec import (
    DEFAULT_MAX_FAILURES,
    LaunchSpec,
    checked,
    checked_input,
    parse_env,
)

DEFAULT_TENANT = "default"
STOP_MARGIN = 15.0
"""Seconds ``stop`` waits past the grace for a launcher to terminate the process."""
POLL = 0.2


def start(argv: Sequence[str]) -> int:
    parser = common.command_parser(
        "start",
        "Store a pending instance with how to launch it, and print its id; "
        "the server's launcher starts it (as its queue allows), relaunches it from its last "
        "checkpoint when its process dies, and relaunches it when it is woken or resumed. "
        "Starting an id again with the same specification and input changes nothing.",
        usage=f"{common.PROG} start [OPTIONS] -- COMMAND [ARG...]",
    )
    parser.add_argument("--id", help="instance id (default: a new unique one)")
    parser.add_argument("--tenant", default=DEFAULT_TENANT, help=f"tenant ({DEFAULT_TENANT})")
    launch_arguments(parser)
    parser.add_argument(
        "--replace",
        action="store_true",
        help="start afresh (its checkpoints deleted) an id whose instance is finished; "
        "`retry` goes on from them instead",
    )
    when = parser.add_mutually_exclusive_group()
    when.add_argument(
        "--at",
        metavar="TIME",
        type=common.checked(not_before_time),
        help="launch no earlier than TIME: ISO 8601 with an offset (2026-12-24T18:00:00+01:00) "
        "or now+DURATION",
    )
    when.add_argument(
        "--delay",
        metavar="DURATION",
        type=common.checked(config.duration),
        help="launch no earlier than DURATION from now (30s, 5m)",
    )
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
    parser.add_argument("command", nargs="+", help="the program to run, and its arguments")
    common.add_target_arguments(parser)
    require_dashes(parser, argv)
    arguments = parser.parse_args(argv)
    spec = launch_spec(arguments)
    payload = None if arguments.input is None else checked_input(read_input(arguments.input))
    instance_id = arguments.id or f"{Path(spec.command[-1]).stem}-{uuid.uuid4().hex[:12]}"
    with common.open_admin(arguments) as admin:
        deduplicated = admin.start_instance(
            instance_id,
            arguments.tenant,
            spec,
            payload,
            replace=arguments.replace,
            not_before=arguments.at,
            delay=arguments.delay,
        )
    if arguments.json:
        print(json.dumps({"instance_id": instance_id, "deduplicated": deduplicated}))
    else:
        print(instance_id)
        if deduplicated:
            print(
                f"{instance_id} was already there with the same specification and input: "
                "nothing changed",
                file=sys.stderr,
            )
    return 0


def launch_arguments(parser: common.Parser) -> None:
    """The options of how an instance is launched and queued (start, schedule add)."""
    _input_and_env(parser, "the instance's input", "set a variable; repeatable")
    parser.add_argument(
        "--cwd", help="working folder of the process (default: the folder start runs in)"
    )
    parser.add_argument(
        "--max-failures",
        "--max-attempts",
        dest="max_failures",
        type=common.positive,
        default=DEFAULT_MAX_FAILURES,
        help="failed attempts in a row without progress (no new checkpoint) after which the "
        f"instance is failed ({DEFAULT_MAX_FAILURES}; --max-attempts is its former name)",
    )
    parser.add_argument(
        "--queue",
        default=records.DEFAULT_QUEUE,
        help=f"the queue whose limits say when it may run ({records.DEFAULT_QUEUE})",
    )
    parser.add_argument(
        "--key", help="concurrency key: the queue's --per-key limit counts each key apart"
    )
    parser.add_argument(
        "--priority",
        type=int,
        default=0,
        help="higher runs first within its queue (0); strict, no ageing",
    )


_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")
"""A negative number, which argparse takes for an argument, not a flag."""


def require_dashes(parser: common.Parser, argv: Sequence[str], leading: int = 0) -> None:
    """Refuse, saying what to write instead, a command that has flags but no ``--``
    before it: its flags would be taken for the parser's own (``--id``, ``--queue``)
    or refused as unknown ones. The command is what follows the options and the
    ``leading`` arguments before it (``schedule add NAME``)."""
    start = _command_start(parser, argv, leading)
    if start is None or not any(_is_flag(each) for each in argv[start:]):
        return
    fixed = shlex.join([*argv[:start], "--", *argv[start:]])
    parser.error(
        f"put `--` before the command, so that its flags are its own: {parser.prog} {fixed}"
    )


def _command_start(parser: common.Parser, argv: Sequence[str], leading: int) -> int | None:
    """The index of the command's first word in ``argv``: the first argument that is
    not an option, an option's value or one of the ``leading`` arguments; None when
    there is none, or a ``--`` or an unknown option comes before it."""
    takes_value = {
        name: action.nargs != 0 for action in parser.arguments for name in action.option_strings
    }
    index = 0
    while index < len(argv):
        token = argv[index]
        if token == "--":
            return None
        if _is_flag(token):
            value = _takes_value(takes_value, token.split("=", 1)[0])
            if value is None:
                return None  # an unknown flag: argparse says so
            index += 2 if value and "=" not in token else 1
        elif leading:
            leading -= 1
            index += 1
        else:
            return index
    return None


def _is_flag(token: str) -> bool:
    return token.startswith("-") and token != "-" and not _NUMBER.match(token)


def _takes_value(takes_value: dict[str, bool], option: str) -> bool | None:
    """Whether ``option`` (in full, or the unique beginning of one, as argparse allows)
    is followed by a value; None if it is no option of the parser."""
    if option in takes_value:
        return takes_value[option]
    found = [name for name in takes_value if name.startswith(option)]
    return takes_value[found[0]] if len(found) == 1 else None


def launch_spec(arguments) -> LaunchSpec:
    """The checked launch specification that the launch options describe."""
    return checked(
        LaunchSpec(
            tuple(arguments.command),
            os.path.abspath(arguments.cwd or os.getcwd()),
            parse_env(arguments.env),
            arguments.max_failures,
            arguments.queue,
            arguments.key,
            arguments.priority,
        )
    )


def not_before_time(value: str) -> dt.datetime:
    """``--at``: an ISO 8601 time with its offset, or ``now+DURATION``."""
    if value.startswith("now+"):
        return clock.utc_now() + dt.timedelta(seconds=config.duration(value[4:]))
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{value!r} is neither an ISO 8601 time (2026-12-24T18:00:00+01:00) nor now+DURATION"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(f"{value!r} has no offset: add one (Z, +01:00) to say whose clock it is")
    return moment


def _input_and_env(parser: common.Parser, input_help: str, env_help: str) -> None:
    parser.add_argument(
        "--input", metavar="JSON|@FILE", help=f"{input_help}: JSON text, or a file's bytes"
    )
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help=env_help)


def read_input(value: str) -> bytes:
    if value.startswith("@"):
        return common.payload(value)
    try:
        data = value.encode("utf-8")
        json.loads(value)
    except UnicodeEncodeError:
        raise errors.ConfigError(
            "--input is not UTF-8 text, which JSON is; use @FILE for other bytes"
        ) from None
    except ValueError as error:
        raise errors.ConfigError(
            f"--input is not JSON ({error}); use @FILE for other bytes"
        ) from None
    except RecursionError:
        raise errors.ConfigError(
            "--input nests too deeply to be read as JSON; use @FILE to pass it as bytes"
        ) from None
    return data


def retry(argv: Sequence[str]) -> int:
    parser = common.command_parser(
        "retry",
        "Make a failed or cancelled instance go on from its last checkpoint: the "
        "same id, its checkpoints kept (finished durable steps are not run again), a fresh "
        "count of failures; the server's launcher launches it at once. With filters instead "
        "of an id, every failed or cancelled instance they match.",
    )
    parser.add_argument("instance", nargs="?", help="instance id (or filters, below)")
    _input_and_env(parser, "a new input", "set a variable of its launch environment; repeatable")
    bulk.add_arguments(parser)
    common.add_target_arguments(parser)
    arguments = parser.parse_args(argv)
    wanted = bulk.chosen(parser, arguments)
    env = parse_env(arguments.env)
    payload = None if arguments.input is None else checked_input(read_input(arguments.input))
    if wanted is not None:
        return bulk.retry(arguments, wanted, env, payload)
    with common.open_admin(arguments) as admin:
        checkpoint_id = admin.retry_instance(arguments.instance, env, payload)
    origin = f"its checkpoint {checkpoint_id}" if checkpoint_id else "the start (no checkpoint)"
    print(f"{arguments.instance} retried: it goes on from {origin}")
    return 0


LATEST = "last"
"""``fork --from last``: the instance's latest checkpoint."""


def fork(argv: Sequence[str]) -> int:
    parser = common.command_parser(
        "fork",
        "Store a new instance that runs again from a checkpoint of INSTANCE, and "
        "print its id: it gets copies of the checkpoints INSTANCE saved up to and including "
        "that one (the durable steps they hold are not run again) and INSTANCE's launch "
        "(command, folder, environment, input, queue, key, priority); the server's launcher "
        "launches it at once. INSTANCE itself is not changed, whatever its status. With "
        f"filters instead of an id (and --from {LATEST}), each instance they match, from its "
        "latest checkpoint: a rerun forks them all again.",
    )
    parser.add_argument("instance", nargs="?", help="the instance to fork (or filters, below)")
    parser.add_argument(
        "--from",
        dest="checkpoint",
        required=True,
        metavar="CHECKPOINT",
        help=f"the checkpoint to run again from, or `{LATEST}` for the latest one",
    )
    parser.add_argument(
        "--id", help="the new instance's id (default: INSTANCE-fork-<8 hex>; not with filters)"
    )
    _input_and_env(parser, "a new input", "set a variable of its launch environment; repeatable")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the outcome as JSON (with filters: one object per instance, then a summary)",
    )
    bulk.add_arguments(parser, with_json=False)
    common.add_target_arguments(parser)
    arguments = parser.parse_args(argv)
    wanted = bulk.chosen(parser, arguments, shared=("json",))
    if wanted is not None:
        if arguments.checkpoint != LATEST:
            parser.error(
                f"with filters only --from {LATEST} is allowed (each instance's latest "
                f"checkpoint): a checkpoint such as {arguments.checkpoint!r} is not one that "
                "many instances share"
            )
        if arguments.id is not None:
            parser.error("--id goes with an instance id, not filters (each fork gets a new id)")
    env = parse_env(arguments.env)
    payload = None if arguments.input is None else checked_input(read_input(arguments.input))
    if wanted is not None:
        return bulk.fork(arguments, wanted, env, payload)
    checkpoint = None if arguments.checkpoint == LATEST else arguments.checkpoint
    with common.open_admin(arguments) as admin:
        new_id, forked_at = admin.fork_instance(
            arguments.instance, checkpoint, arguments.id, env, payload
        )
    if arguments.json:
        print(
            json.dumps(
                {"instance_id": new_id, "forked_from": arguments.instance, "checkpoint": forked_at}
            )
        )
    else:
        print(new_id)
        print(f"{new_id}: forked from {arguments.instance} at {forked_at}", file=sys.stderr)
    return 0


def stop(argv: Sequence[str]) -> int:
    parser = common.command_parser(
        "stop",
        "Send cancel, wait for the instance to end, and past the grace have its "
        "process terminated (SIGTERM, then SIGKILL) and the instance recorded cancelled. "
        "With filters instead of an id, every live instance they match.",
    )
    parser.add_argument("instance", nargs="?", help="instance id (or filters, below)")
    parser.add_argument(
        "--grace",
        type=common.checked(config.duration),
        default=30.0,
        metavar="DURATION",
        help="how long the instance has to acknowledge the cancel (30s)",
    )
    bulk.add_arguments(parser)
    common.add_target_arguments(parser)
    arguments = parser.parse_args(argv)
    wanted = bulk.chosen(parser, arguments)
    if wanted is not None:
        return bulk.stop(arguments, wanted, arguments.grace)
    with common.open_admin(arguments) as admin:
        launched = admin.stop_instance(arguments.instance, arguments.grace)
        deadline = time.monotonic() + arguments.grace + (STOP_MARGIN if launched else 0)
        while time.monotonic() < deadline:
            instance = _instance(admin, arguments.instance)
            if instance.status.is_terminal:
                print(f"{arguments.instance} {instance.status.value}: {_ending(instance)}")
                return 0
            time.sleep(POLL)
        reason = f"stopped: the instance did not end within {arguments.grace:g}s of the cancel" + (
            "" if launched else " (no launcher runs its process: it may still be running)"
        )
        admin.give_up_stop(arguments.instance, reason)
        instance = _instance(admin, arguments.instance)
        print(f"{arguments.instance} {instance.status.value}: {_ending(instance)}")
    return 0


def _instance(admin, instance_id: str) -> records.Instance:
    details = admin.instance_details(instance_id, recent_events=0)
    if details is None:
        raise errors.OperationRefused(f"Instance '{instance_id}' not found")
    return details.instance


def _ending(instance: records.Instance) -> str:
    if instance.error:
        return instance.error
    return "acknowledged the cancel" if instance.status.value == "cancelled" else "ended"


def logs_command(argv: Sequence[str]) -> int:
    parser = common.command_parser(
        "logs",
        "Print what a launched instance wrote (all its attempts): by default both "
        "stdout and stderr, each line labelled `stdout| ` or `stderr| `, attempt by attempt "
        "(each attempt's marker line once), within an attempt its stdout lines then its stderr "
        "lines (the logs do not record the order between the two); with --follow, lines as "
        "they arrive. --stream prints one of them as it is.",
    )
    parser.add_argument("instance", help="instance id")
    parser.add_argument(
        "--stream",
        choices=logs.STREAMS,
        help="print only this output, its bytes unchanged (default: both, labelled)",
    )
    parser.add_argument("--follow", "-f", action="store_true", help="keep printing what is added")
    common.add_target_arguments(parser)
    arguments = parser.parse_args(argv)
    out = sys.stdout.buffer
    with common.open_admin(arguments) as admin:
        _instance(admin, arguments.instance)

        def read(stream: str, offset: int) -> tuple[bytes, int]:
            return admin.read_log(arguments.instance, stream, offset)

        if arguments.stream is None:
            _print_both(both_logs.BothLogs(read), arguments.follow, out)
        else:
            _print_one(read, arguments.stream, arguments.follow, out)
    return 0


def _print_one(read: both_logs.Read, stream: str, follow: bool, out) -> None:
    offset = 0
    while True:
        data, offset = read(stream, offset)
        if data:
            out.write(data)
            out.flush()
            continue
        if not follow:
            return
        time.sleep(POLL)


def _print_both(both: both_logs.BothLogs, follow: bool, out) -> None:
    while True:
        out.writelines(both.take(final=not follow))
        out.flush()
        if not follow:
            return
        time.sleep(POLL)
