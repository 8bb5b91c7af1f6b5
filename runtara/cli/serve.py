"""``runtara-core`` / ``runtara-core serve``."""

from __future__ import annotations

import os
from collections.abc import Sequence

from runtara import __version__, config
from runtara.cli import common


def serve(argv: Sequence[str], commands: Sequence[str]) -> int:
    parser = common.Parser(
        prog=common.PROG,
        description="Serve the runtara instance protocol over QUIC. "
        f"Other commands: {', '.join(name for name in commands if name != 'serve')} "
        f"(see `{common.PROG} COMMAND --help`).",
    )
    parser.add_argument("--version", action="version", version=f"{common.PROG} {__version__}")
    config.add_arguments(parser, config.SERVER_SETTINGS, config.ServerConfig)
    arguments = parser.parse_args(argv)
    settings = config.server_config(arguments, os.environ)
    common.setup_logging(settings.log_level)
    from runtara.server import run  # imports aioquic; the tools that do not serve skip it

    return run.serve(settings)
