"""What the commands share: the parser, where to act, payloads and times."""

from __future__ import annotations

import argparse
import datetime as dt
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from runtara import clock, config, errors
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

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        self.arguments.append(action)
        return action

    def error(self, message: str):  # one clear line, exit code 2
        self.exit(2, f"{self.prog}: error: {message}\n")

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:
        if args is DESCRIBE:
            raise ParserBuilt(self)
        return super().parse_args(args, namespace)


class _Describe(tuple):
    """The type of :data:`DESCRIBE`."""


DESCRIBE: Sequence[str] = _Describe()
"""Passed as a command's arguments, it makes :meth:`Parser.parse_args` raise
:class:`ParserBuilt` with the command's parser: see :func:`parser_of`."""


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


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """--driver/--database-url to work on the storage, or --server/--token/--timeout
    to ask a server."""
    config.add_arguments(parser, config.TOOL_SETTINGS, config.ToolConfig)


def open_admin(arguments: argparse.Namespace) -> Admin:
    """A RemoteAdmin when a server is named, else a LocalAdmin on the configured
    storage, which must exist already: the tools that use this never create or
    migrate a database. Raises StorageUnavailable naming the database looked for
    when there is none (or when it cannot be reached)."""
    target = config.tool_config(arguments, os.environ)
    if target.server is not None:
        from runtara.admin.remote import RemoteAdmin  # imports aioquic: only when needed

        return RemoteAdmin(
            target.server,
            token=target.token,
            timeout=target.timeout,
            fingerprint=target.fingerprint,
            ca_file=target.ca_file,
            server_name=target.server_name,
        )
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
            f"no runtara database at {storage.describe()} "
            f"(start the server or run `{PROG} migrate` first)"
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
