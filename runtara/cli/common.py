"""What the commands share: the parser, logging, where to act, payloads and times."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from runtara import clock, config, errors
from runtara.admin.base import Admin
from runtara.admin.local import LocalAdmin
from runtara.storage import selection

PROG = "runtara-core"

T = TypeVar("T")


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one clear line, exit code 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # aioquic logs every handshake at INFO; keep it for --log-level debug.
    logging.getLogger("quic").setLevel(logging.DEBUG if level == "debug" else logging.WARNING)


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

        return RemoteAdmin(target.server, token=target.token, timeout=target.timeout)
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
    """``--payload TEXT`` is the text as UTF-8; ``--payload @FILE`` is the file's bytes."""
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
    return value.encode("utf-8")


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
