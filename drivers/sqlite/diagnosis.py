"""Why a SQLite database cannot be written, in words an operator can act on."""

from __future__ import annotations

import os
from pathlib import Path

FULL_BELOW = 4096
"""Free bytes under which the disk counts as full: not one more database page."""


def write_problem(path: Path) -> str | None:
    """What keeps SQLite from writing the database at ``path`` (its folder or the
    file read-only, or the disk full), or None when nothing visible does."""
    folder = path.parent
    if folder.exists() and not os.access(folder, os.W_OK):
        return (
            f"its folder is {_unwritable(folder)}, and SQLite in WAL mode writes "
            "next to the database"
        )
    if path.exists() and not os.access(path, os.W_OK):
        return f"the file is {_unwritable(path)}"
    free = free_bytes(path)
    if free is not None and free < FULL_BELOW:
        return f"the disk is full ({free} bytes free)"
    return None


def free_bytes(path: Path) -> int | None:
    """Bytes this process may still write on the file system holding ``path``."""
    try:
        stat = os.statvfs(path if path.exists() else path.parent)
    except OSError:
        return None
    # root may also use the blocks reserved for it
    blocks = stat.f_bfree if os.geteuid() == 0 else stat.f_bavail
    return blocks * stat.f_frsize


def _unwritable(path: Path) -> str:
    """Why ``path``, which this process may not write, is so: a read-only mount, a
    read-only file, or another user's."""
    try:
        read_only = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
        owner = path.stat().st_uid
    except OSError:
        return "read-only"
    if read_only:
        return "read-only (a read-only mount)"
    if owner != os.geteuid() and os.geteuid() != 0:
        return f"another user's (uid {owner}; this process runs as uid {os.geteuid()})"
    return "read-only"
