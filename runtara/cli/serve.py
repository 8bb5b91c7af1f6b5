"""``runtara-core`` / ``runtara-core serve``."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping, Sequence

from runtara import __version__, config, logging_setup
from runtara.cli import common

logger = logging.getLogger("runtara")


def serve(argv: Sequence[str], commands: Mapping[str, str]) -> int:
    """Serve until SIGINT or SIGTERM. ``commands`` (name to one-line summary)
    are listed by ``--help``, which is also the program's help."""
    width = max(len(name) for name in commands)
    listing = "\n".join(f"  {name.ljust(width)}  {summary}" for name, summary in commands.items())
    parser = common.Parser(
        prog=common.PROG,
        usage=f"{common.PROG} [COMMAND] [OPTIONS]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=f"The runtara-core durable-execution engine.\n\ncommands:\n{listing}\n\n"
        "Without a command it serves; the options below are the server's.\n"
        f"`{common.PROG} COMMAND --help` shows a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"{common.PROG} {__version__}")
    config.add_arguments(parser, config.SERVER_SETTINGS, config.ServerConfig)
    arguments = parser.parse_args(argv)
    settings = config.server_config(arguments, os.environ)
    # Imports aioquic: the tools that do not serve skip it.
    from runtara.server import run, supervisor

    logging_setup.configure(
        settings.log_level, settings.log_format, process=supervisor.process_index()
    )
    for warning in config.secrets_on_command_line(arguments):
        logger.warning("%s", warning)
    return run.serve(settings)
