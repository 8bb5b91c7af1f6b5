"""Appending a line to a file shared by many workflow processes."""

from __future__ import annotations

import os


def append_line(path: str, line: str) -> None:
    """Append ``line`` with one write, so that lines of processes writing at once
    never interleave."""
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(descriptor, line.encode())
    finally:
        os.close(descriptor)
