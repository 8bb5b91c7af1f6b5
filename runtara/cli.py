"""The ``runtara-core`` command.

``runtara-core [FLAGS]`` serves; ``runtara-core COMMAND ...`` runs a tool
(``migrate``, ``drivers``). Every flag falls back to its environment variable,
then to its default; ``--help`` lists both.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from runtara import __version__, config, errors
from runtara.storage import registry, selection

PROG = "runtara-core"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one clear line, exit code 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # aioquic logs every handshake at INFO; keep it for --log-level debug.
    logging.getLogger("quic").setLevel(logging.DEBUG if level == "debug" else logging.WARNING)


def _serve(argv: Sequence[str]) -> int:
    parser = _Parser(
        prog=PROG,
        description="Serve the runtara instance protocol over QUIC. "
        f"Other commands: {', '.join(name for name in COMMANDS if name != 'serve')} "
        f"(see `{PROG} COMMAND --help`).",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    config.add_arguments(parser, config.SERVER_SETTINGS, config.ServerConfig)
    arguments = parser.parse_args(argv)
    settings = config.server_config(arguments, os.environ)
    _setup_logging(settings.log_level)
    from runtara.server import run  # imports aioquic; tools that do not serve skip it

    return run.serve(settings)


def _migrate(argv: Sequence[str]) -> int:
    parser = _Parser(prog=f"{PROG} migrate", description="Apply pending schema migrations.")
    config.add_arguments(parser, config.STORAGE_SETTINGS, config.StorageConfig)
    storage_config = config.storage_config(parser.parse_args(argv), os.environ)
    storage = selection.open_driver(storage_config, workers=1)
    try:
        applied = storage.migrate()
    finally:
        storage.close()
    if applied:
        print(f"{storage.describe()}: applied {', '.join(applied)}")
    else:
        print(f"{storage.describe()}: up to date")
    return 0


def _drivers(argv: Sequence[str]) -> int:
    parser = _Parser(prog=f"{PROG} drivers", description="List the installed storage drivers.")
    parser.parse_args(argv)
    broken = 0
    for info in registry.DriverRegistry().describe():
        entry = info.entry
        origin = f"{entry.distribution or '?'} {entry.version or ''}".strip()
        if info.error is None:
            schemes = ", ".join(f"{scheme}:" for scheme in info.driver.url_schemes) or "-"
            print(f"{entry.name:<12} {origin:<28} {entry.target:<40} URL schemes {schemes}")
        else:
            broken += 1
            print(f"{entry.name:<12} {origin:<28} {entry.target:<40} BROKEN: {info.error}")
    return 1 if broken else 0


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "serve": _serve,
    "migrate": _migrate,
    "drivers": _drivers,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = "serve"
    if argv and argv[0] in COMMANDS:
        command = argv.pop(0)
    try:
        return COMMANDS[command](argv)
    except (errors.ConfigError, errors.DriverError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except errors.StorageError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
