"""The lock every process writing one SQLite file takes around its transaction.

SQLite serializes writers itself, but a process that finds the database
locked sleeps and polls (1, 2, 5, 10 ... ms): with several server processes
writing one file, commits then wait for sleeps rather than for each other,
and the slowest requests take hundreds of milliseconds. An exclusive
``flock`` on a file next to the database queues the writers in the kernel
instead: the next one wakes the moment the lock is released. The kernel also
releases it when a process dies, so a killed writer never leaves it held.

The lock only saves time: SQLite keeps writers apart without it. So it never
stops a write:

- A wait for it is bounded by ``timeout``. Then the write goes ahead under
  SQLite's own locking, and so does every write until the lock is free again:
  no caller waits for a wait that began more than ``timeout`` ago.
- A lock file that cannot be opened, or a file system that refuses ``flock``
  (some NFS, CIFS and FUSE mounts), is logged once; writes go ahead without it.
- A lock file that was deleted or replaced is noticed by its next holder, which
  then locks the file now at the path, so processes that open it later are
  still kept apart.

A blocking ``flock`` cannot time out, so one helper thread per lock does the
blocking wait: a caller first tries without blocking; if another process holds
the lock, the helper blocks in ``flock`` and hands the lock to the caller, who
waits for that at most until its deadline. A lock the helper gets after its
caller gave up is released at once. (Polling with ``LOCK_NB`` instead was
measured: it doubles the slowest commits of two processes writing one file.)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)


class FileLock:
    """An exclusive lock on ``path`` (created if missing) between processes, held by
    one thread of this process at a time (the caller keeps its threads apart)."""

    def __init__(self, path: Path, *, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._state = threading.Condition()
        """Guards every field below; the helper and the callers wait on it."""
        self._fd: int | None = None
        self._holding = False
        """A caller holds the lock (between acquiring and releasing it)."""
        self._asked_at: float | None = None
        """When the helper was asked to take the lock; None when it is not waiting for it."""
        self._wanted = False
        """A caller waits for the helper to hand the lock over."""
        self._handed = False
        """The helper took the lock for the caller that waits for it."""
        self._helper_failure: OSError | None = None
        self._helper: threading.Thread | None = None
        self._reported_stuck = False
        self._reported_refused = False
        self._closed = False

    @contextlib.contextmanager
    def held(self) -> Iterator[bool]:
        """Hold the lock for the block if it can be had; yields whether it is held."""
        holding = self._acquire()
        try:
            yield holding
        finally:
            if holding:
                self._release()

    def close(self) -> None:
        """Close the lock file (at once, or when its holder or the helper is done with it)."""
        with self._state:
            self._closed = True
            self._state.notify_all()
            self._close_if_unused()

    # --- taking and releasing -------------------------------------------------------

    def _acquire(self) -> bool:
        with self._state:
            while not self._closed:
                try:
                    fd = self._descriptor()
                    if not self._take(fd):
                        return False
                except OSError as error:
                    if error.errno == errno.EINTR:
                        raise
                    self._report_refused(error)
                    return False
                if _is_the_file_at(fd, self.path):
                    self._holding = True
                    return True
                # Deleted or replaced while this process kept it open: lock the file
                # at the path, the one that processes opening it now lock.
                _unlock(fd)
                os.close(fd)
                self._fd = None
            return False

    def _take(self, fd: int) -> bool:
        """Lock ``fd`` (the state held): at once if it is free, else through the helper
        until the deadline. False if the deadline passed first."""
        if self._asked_at is None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                pass
            self._asked_at = time.monotonic()
            if self._helper is None:
                self._helper = threading.Thread(
                    target=self._help, name=f"lock {self.path.name}", daemon=True
                )
                self._helper.start()
            self._state.notify_all()
        self._wanted = True
        try:
            self._state.wait_for(
                lambda: self._handed or self._asked_at is None,
                self._asked_at + self.timeout - time.monotonic(),
            )
        finally:
            self._wanted = False
        if self._handed:
            self._handed = False
            return True
        if self._helper_failure is not None:
            failure, self._helper_failure = self._helper_failure, None
            raise failure
        if not self._reported_stuck:
            self._reported_stuck = True
            logger.warning(
                "the writers' lock %s has been held by another process for over %gs: "
                "writing without it (SQLite still keeps writers apart) until it is free",
                self.path,
                self.timeout,
            )
        return False

    def _help(self) -> None:
        """The helper thread: whenever asked, wait for the lock and hand it over."""
        while True:
            with self._state:
                self._state.wait_for(lambda: self._asked_at is not None or self._closed)
                if self._asked_at is None:
                    self._helper = None
                    return
                fd = self._fd
            failure = None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # blocks without the interpreter lock
            except OSError as error:
                failure = error
            with self._state:
                self._asked_at = None
                if self._reported_stuck and failure is None:
                    self._reported_stuck = False
                    logger.info("the writers' lock %s is free again", self.path)
                if self._wanted and failure is None:
                    self._handed = True
                elif self._wanted:
                    self._helper_failure = failure
                elif failure is None:
                    _unlock(fd)  # its caller gave up
                self._state.notify_all()
                self._close_if_unused()

    def _release(self) -> None:
        with self._state:
            self._holding = False
            _unlock(self._fd)
            self._close_if_unused()

    # --- the file -------------------------------------------------------------------

    def _descriptor(self) -> int:
        """The open lock file (the state held): for writing if it can be, since NFS
        locks only a file open for writing, else read-only, which is enough for
        ``flock`` elsewhere (a lock file that another user created, say)."""
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                    raise
                self._fd = os.open(self.path, os.O_RDONLY)
        return self._fd

    def _close_if_unused(self) -> None:
        if self._closed and not self._holding and self._asked_at is None and self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _report_refused(self, error: OSError) -> None:
        if not self._reported_refused:
            self._reported_refused = True
            logger.warning(
                "cannot use the writers' lock %s (%s): writing without it "
                "(SQLite still keeps writers apart, with more waiting between processes)",
                self.path,
                error,
            )


def _is_the_file_at(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (not deleted, not replaced)."""
    try:
        at_path = os.stat(path)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell: keep the lock that is held
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (at_path.st_dev, at_path.st_ino)


def _unlock(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
