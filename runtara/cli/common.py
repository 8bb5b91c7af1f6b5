"""What the commands share: the parser, where to act, payloads and times."""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from runtara import clock, config, errors, runtime_files
from runtara.admin.base import Admin
from runtara.admin.local import LocalAdmin
from runtara.storage import selection

PROG = "runtara-core"

T = TypeVar("T")


class Parser(argparse.ArgumentParser):
    """argparse's parser, with a one-line error (exit code 2) and a record of
    its arguments (:attr:`arguments`), which shell completion reads."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.arguments: list[argparse.Action] = []
        """Every argument added, ``--help`` included, in order."""
        super().__init__(*args, **kwargs)

    def _add_action(self, action: argparse.Action) -> argparse.Action:
        # every argument passes here, those of groups too
        self.arguments.append(action)
        return super()._add_action(action)

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        # argparse's own check, with the choice meant named (subcommands, --stream...)
        try:
            super()._check_value(action, value)
        except argparse.ArgumentError as error:
            hint = did_you_mean(str(value), [str(each) for each in action.choices])
            raise argparse.ArgumentError(
                action, f"{error.message}; {hint}" if hint else error.message
            ) from None

    def error(self, message: str):  # one clear line, exit code 2
        self.exit(2, f"{self.prog}: error: {message}\n")

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:
        if args is DESCRIBE:
            raise ParserBuilt(self)
        arguments, unknown = self.parse_known_args(args, namespace)
        if unknown:
            message = f"unrecognized arguments: {' '.join(unknown)}"
            flag = unknown[0].split("=", 1)[0]
            hint = did_you_mean(flag, self._flags()) if flag.startswith("--") else ""
            self.error(f"{message}; {hint}" if hint else message)
        return arguments

    def _flags(self) -> list[str]:
        """The long flags of this parser and of its subcommands' parsers."""
        parsers = [self]
        for action in self._actions:  # the subcommands are not in self.arguments
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
        return sorted(
            {
                flag
                for parser in parsers
                for action in getattr(parser, "arguments", [])
                for flag in action.option_strings
                if flag.startswith("--")
            }
        )


class _Describe(tuple):
    """The type of :data:`DESCRIBE`."""


DESCRIBE: Sequence[str] = _Describe()
"""Passed as a command's arguments, it makes :meth:`Parser.parse_args` raise
:class:`ParserBuilt` with the command's parser: see :func:`parser_of`."""


def command_parser(command: str, description: str, **options: Any) -> Parser:
    """The parser of ``runtara-core COMMAND``."""
    return Parser(prog=f"{PROG} {command}", description=description, **options)


class ParserBuilt(Exception):
    def __init__(self, parser: Parser) -> None:
        super().__init__(parser.prog)
        self.parser = parser


def parser_of(command: Callable[[Sequence[str]], int]) -> Parser:
    """The parser of ``command``. Every command builds its whole parser and
    parses its arguments before it does anything else, so running it with
    :data:`DESCRIBE` gives its parser and does nothing."""
    try:
        command(DESCRIBE)
    except ParserBuilt as built:
        return built.parser
    raise AssertionError(f"{command} returned without parsing its arguments")


def did_you_mean(typed: str, choices: Sequence[str]) -> str:
    """The hint "did you mean 'X'?" naming the choices ``typed`` was most likely meant
    to be (see :func:`meant`), or "" when none is close."""
    found = meant(typed, choices)
    if not found:
        return ""
    quoted = [repr(each) for each in found]
    listed = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    return f"did you mean {listed}?"


def meant(typed: str, choices: Sequence[str]) -> list[str]:
    """The choices ``typed`` was most likely meant to be, best first: the ones it begins
    (``sta``: start, stats); else the ones one slip away (a letter missing, extra or
    wrong, or two neighbours swapped: ``strat``: start); else the one most alike."""
    if not typed:
        return []
    begun = [each for each in choices if each.startswith(typed)]
    if begun:
        return sorted(begun, key=lambda each: (len(each), each))
    slipped = [each for each in choices if _one_slip(typed, each)]
    if slipped:
        return slipped
    return difflib.get_close_matches(typed, choices, n=1)


def _one_slip(typed: str, word: str) -> bool:
    """Whether ``typed`` is ``word`` with one letter missing, extra or wrong, or two
    neighbouring letters swapped."""
    if typed == word or abs(len(typed) - len(word)) > 1:
        return False
    start = 0
    while start < min(len(typed), len(word)) and typed[start] == word[start]:
        start += 1
    rest_typed, rest_word = typed[start:], word[start:]
    if len(typed) == len(word):
        swapped = rest_typed[1:2] + rest_typed[:1] + rest_typed[2:]
        return rest_typed[1:] == rest_word[1:] or swapped == rest_word
    return rest_typed[1:] == rest_word or rest_typed == rest_word[1:]


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """--driver/--database-url to work on the storage, or --server/--token/--timeout
    to ask a server."""
    config.add_arguments(parser, config.TOOL_SETTINGS, config.ToolConfig)


def open_admin(arguments: argparse.Namespace) -> Admin:
    """Where the command acts: the management service ``--server`` names; else the
    store ``--database-url``/``--driver`` name, which must exist already (the tools
    that use this never create or migrate a database); else the server of this
    user running on this machine, found through its runtime file, with its
    credential and its certificate's fingerprint. Raises OperationRefused when
    none of those can be had (no server runs here, or several), and
    StorageUnavailable naming the database looked for when there is none."""
    target = config.tool_config(arguments, os.environ)
    if target.server is not None:
        return _remote(target, target.server, _local_server(target.server))
    if target.names_storage:
        return _local(target)
    return _remote(target, *running_server())


def running_server() -> tuple[tuple[str, int], runtime_files.RunningServer]:
    """The management address and runtime file of the one server of this user
    running on this machine; OperationRefused when there is none, or several."""
    found = runtime_files.running()
    if not found:
        raise errors.OperationRefused(
            "no runtara-core server of this user runs on this machine (start one with "
            f"`{PROG}`), and no --server or --database-url says where else to act"
        )
    if len(found) > 1:
        listed = "; ".join(
            f"{server.describe()}, --server {server.management_addr}" for server in found
        )
        raise errors.OperationRefused(
            f"{len(found)} runtara-core servers run on this machine ({listed}): name one "
            "with --server"
        )
    server = found[0]
    if server.management_addr is None:
        raise errors.OperationRefused(
            f"the server running here ({server.describe()}) serves no management service "
            "(--management-addr off): name its store with --database-url"
        )
    return config.address(server.management_addr), server


def _local_server(address: tuple[str, int]) -> runtime_files.RunningServer | None:
    """The runtime file of the server of this machine whose management service is at
    ``address``, if one runs here."""
    for server in runtime_files.running():
        if server.management_addr and config.address(server.management_addr) == address:
            return server
    return None


def _remote(
    target: config.ToolConfig,
    address: tuple[str, int],
    known: runtime_files.RunningServer | None,
) -> Admin:
    from runtara.admin.remote import RemoteAdmin  # imports aioquic: only when needed

    token, fingerprint = target.token, target.fingerprint
    if known is not None and token is None and fingerprint is None and target.ca_file is None:
        # A server of this machine: its runtime file gives the credential, and the
        # certificate to expect.
        token, fingerprint = known.operate_token, known.fingerprint
    return RemoteAdmin(
        address,
        token=token,
        timeout=target.timeout,
        fingerprint=fingerprint,
        ca_file=target.ca_file,
        server_name=target.server_name,
    )


def _local(target: config.ToolConfig) -> Admin:
    storage = selection.open_driver(target.storage, workers=2)
    try:
        found = storage.exists()
    except errors.StorageError as error:
        storage.close()
        raise errors.StorageUnavailable(f"storage {storage.describe()}: {error}") from None
    except BaseException:
        storage.close()
        raise
    if not found:
        storage.close()
        raise errors.StorageUnavailable(
            f"no runtara database at {storage.describe()} (start a server on it, or run "
            f"`{PROG} migrate --database-url ...` to create it)"
        )
    return LocalAdmin(storage, runs_dir=target.runs_dir)


def payload(value: str | None) -> bytes:
    """``--payload TEXT`` is the argument's bytes exactly as the shell passed them
    (text as UTF-8, and bytes that are not UTF-8 unchanged); ``--payload @FILE``
    is the file's bytes."""
    if value is None:
        return b""
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            return path.read_bytes()
        except OSError as error:
            raise errors.ConfigError(
                f"--payload {value}: cannot read {path}: {error.strerror}"
            ) from None
    return os.fsencode(value)


def moment(value: str, flag: str) -> dt.datetime:
    """An ISO 8601 time (UTC unless it says otherwise), or a duration meaning that long ago."""
    try:
        return clock.utc_now() - dt.timedelta(seconds=config.duration(value))
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise errors.ConfigError(
            f"{flag} {value!r} is neither an ISO time (2026-11-27T10:00:00Z) nor a duration (2h)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def checked(parse: Callable[[str], T]) -> Callable[[str], T]:
    """``parse`` as an argparse ``type``: its ValueError's message becomes the
    usage error (argparse would print only the function's name)."""

    def check(raw: str) -> T:
        try:
            return parse(raw)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return check


def positive(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError
    return value
