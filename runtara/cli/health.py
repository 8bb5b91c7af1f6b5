"""``health``: is the server (with --server) or the storage answering?"""

from __future__ import annotations

from collections.abc import Sequence

from runtara import errors
from runtara.cli import common


def health(argv: Sequence[str]) -> int:
    parser = common.Parser(
        prog=f"{common.PROG} health",
        description="Exit 0 if the server answers (with --server) or the storage is "
        "reachable (without), 1 otherwise, with one line saying which.",
    )
    common.add_target_arguments(parser)
    arguments = parser.parse_args(argv)
    try:
        admin = common.open_admin(arguments)
    except errors.StorageError as error:  # no database there, or none reachable
        print(f"unhealthy: {error}")
        return 1
    with admin:
        try:
            print(admin.health())
        except (errors.StorageError, errors.ClientError) as error:
            print(f"unhealthy: {admin.describe()}: {error}")
            return 1
    return 0
