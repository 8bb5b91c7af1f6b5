"""What the commands share: the parser, logging, where to act, payloads and times."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
from pathlib import Path

from runtara import clock, config, errors
from runtara.storage import selection

PROG = "runtara-core"


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


TARGET_SETTINGS = (
    config.Setting(
        "server",
        "--server",
        "RUNTARA_MANAGEMENT_ADDR",
        config.address,
        "act through a running server's management service at HOST:PORT instead of "
        "opening the storage directly",
        "HOST:PORT",
    ),
    config.Setting(
        "token",
        "--token",
        "RUNTARA_MANAGEMENT_TOKEN",
        config.text,
        "the server's management token",
        "TOKEN",
    ),
)


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """--driver/--database-url to work on the storage, or --server/--token to ask a server."""
    config.add_arguments(parser, config.STORAGE_SETTINGS, config.StorageConfig)
    for setting in TARGET_SETTINGS:
        parser.add_argument(
            setting.flag,
            dest=setting.name,
            metavar=setting.metavar,
            default=None,
            help=f"{setting.help} [env {setting.env}]",
        )


def open_admin(arguments: argparse.Namespace, *, prepare: bool = True):
    """A RemoteAdmin when a server is named, else a LocalAdmin on the configured storage
    (migrated first unless ``prepare`` is false)."""
    target = config.resolve(TARGET_SETTINGS, arguments, os.environ)
    if "server" in target:
        from runtara.admin.remote import RemoteAdmin

        return RemoteAdmin(target["server"], token=target.get("token"))
    from runtara.admin.local import LocalAdmin

    storage = selection.open_driver(config.storage_config(arguments, os.environ), workers=2)
    if prepare:
        try:
            storage.migrate()
        except BaseException:
            storage.close()
            raise
    return LocalAdmin(storage)


def close_admin(admin) -> None:
    admin.close()


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


def positive(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError
    return value
