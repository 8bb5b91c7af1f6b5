"""The lock every process writing one SQLite file takes around its transaction.

SQLite serializes writers itself, but a process that finds the database
locked sleeps and polls (1, 2, 5, 10 ... ms): with several server processes
writing one file, commits then wait for sleeps rather than for each other,
and the slowest requests take hundreds of milliseconds. An exclusive
``flock`` on a file next to the database queues the writers in the kernel
instead: the next one wakes the moment the lock is released. The kernel also
releases it when a process dies, so a killed writer never leaves it held.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path


class FileLock:
    """An exclusive lock on ``path`` (created if missing), shared by the threads of
    one process and exclusive between processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._open = threading.Lock()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        fd = self._descriptor()
        fcntl.flock(fd, fcntl.LOCK_EX)  # blocks without the interpreter lock
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _descriptor(self) -> int:
        with self._open:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            return self._fd

    def close(self) -> None:
        with self._open:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
