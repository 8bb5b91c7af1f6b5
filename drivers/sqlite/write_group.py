"""A write group: concurrent callers commit their writes together, on their own threads.

SQLite allows one writer at a time, and a durable commit costs an fsync. So
writes are batched the way LevelDB batches them, with no writer thread of its
own: a caller queues its job; if no caller is leading, it becomes the leader,
takes the queued jobs (its own first, at most ``max_batch``) and runs them in
one transaction on the single write connection, each under its own savepoint,
commits once, and completes every job of the batch with its result or its
exception. Then it hands the leadership to the owner of the next queued job,
if any, and returns its own result. A caller whose job another leader ran just
wakes up with the outcome.

What every caller can rely on:

- Its work runs at most once, and never again after it raised: a job that
  raises undoes only its own work (its savepoint) and its exception reaches
  its caller; the other jobs of the batch commit.
- It gets its committed result or an exception, never nothing: a result is
  handed over only after the COMMIT succeeded.
- Failures of the store (opening the connection, BEGIN, a transaction SQLite
  rolled back on its own, COMMIT) fail the jobs of that batch with
  :class:`runtara.errors.StorageError` (``StorageUnavailable`` when the
  database cannot be opened); the connection is dropped and the next batch
  opens a new one, so the group keeps serving once the cause is gone.
- Its wait is bounded by ``wait_timeout`` (then
  :class:`runtara.errors.StorageUnavailable`): a job that was still queued is
  withdrawn and never runs; a job already in a batch may still commit, and the
  message says so.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from runtara import errors, metrics

logger = logging.getLogger(__name__)

_QUEUED, _RUNNING, _DONE = "queued", "running", "done"


class _Job:
    """One caller's work and, once done, its outcome.

    ``_wake`` is held from creation and released exactly once by another thread:
    to hand the owner the leadership, or to deliver the outcome of a batch that
    another leader ran (a leader does not release its own job).
    """

    __slots__ = ("work", "state", "lead", "result", "error", "_wake")

    def __init__(self, work: Callable[[sqlite3.Connection], Any]) -> None:
        self.work = work
        self.state = _QUEUED
        self.lead = False
        self.result: Any = None
        self.error: BaseException | None = None
        self._wake = threading.Lock()
        self._wake.acquire()

    def wake(self) -> None:
        self._wake.release()

    def sleep(self, timeout: float) -> None:
        self._wake.acquire(timeout=max(timeout, 0.0))

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class WriteGroup:
    """Runs write work on one SQLite connection, committing concurrent callers together.

    ``connect`` opens the write connection (raising
    :class:`runtara.errors.StorageUnavailable` when it cannot); it is called
    by the leader of the first batch and again after a batch failed.
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        *,
        max_batch: int = 256,
        wait_timeout: float = 30.0,
        writers_lock: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._connect = connect
        self._writers_lock = writers_lock
        """Held around each batch's transaction, to queue other processes' writers."""
        self._max_batch = max_batch
        self._wait_timeout = wait_timeout
        self._lock = threading.Lock()
        self._queue: collections.deque[_Job] = collections.deque()
        self._leading = False
        self._connection: sqlite3.Connection | None = None
        self.commits = 0
        """Batches committed."""
        self.transactions = 0
        """Jobs in the committed batches (refused ones included: they ran)."""

    def run(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``work(connection)`` inside a write transaction and return its result
        once committed; its exception (after undoing its work) if it raises."""
        job = _Job(work)
        with self._lock:
            self._queue.append(job)
            lead = not self._leading
            self._leading = True
        if lead or self._wait(job):
            self._lead(job)
        return job.outcome()

    @property
    def queued(self) -> int:
        """Jobs waiting for a batch (not the ones being committed)."""
        return len(self._queue)

    def close(self) -> None:
        """Close the write connection; call when no more work is submitted."""
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    # --- followers ----------------------------------------------------------------

    def _wait(self, job: _Job) -> bool:
        """Wait until the job is done (False) or its owner must lead (True)."""
        deadline = time.monotonic() + self._wait_timeout
        while True:
            job.sleep(deadline - time.monotonic())
            with self._lock:
                if job.state is _DONE:
                    return False
                if job.lead:
                    return True
                if time.monotonic() < deadline:
                    continue  # the timer fired a little early
                if job.state is _QUEUED:
                    self._queue.remove(job)
                    raise errors.StorageUnavailable(
                        f"Database unavailable: no write slot within {self._wait_timeout:g}s "
                        "(the database is busy or stuck); the write was not started"
                    )
                raise errors.StorageUnavailable(
                    f"Database unavailable: the commit did not finish within "
                    f"{self._wait_timeout:g}s; the write may still have been applied"
                )

    # --- the leader -----------------------------------------------------------------

    def _lead(self, own: _Job) -> None:
        with self._lock:
            own.lead = False
            batch = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
            for job in batch:
                job.state = _RUNNING
        finished = False
        try:
            self._commit(batch)
            finished = True
        finally:
            # Even when something that is not an Exception interrupted the
            # batch, every job of it ends with an outcome and the next caller
            # gets the leadership: no one waits for a leader that is gone. The
            # successor is woken first, so the next batch starts while the
            # callers of this one are still waking up (measured: about 9 % more
            # 64 KiB checkpoints per second).
            if not finished:
                self._fail(batch, errors.StorageError("Database error: the write was interrupted"))
                self._drop_connection()
            with self._lock:
                if self._queue:
                    successor = self._queue[0]
                    successor.lead = True
                    successor.wake()
                else:
                    self._leading = False
                for job in batch:
                    job.state = _DONE
                    if job is not own:
                        job.wake()

    def _commit(self, batch: list[_Job]) -> None:
        """Run the batch in one transaction; set each job's result or error."""
        try:
            connection = self._open()
        except Exception as error:
            self._fail(batch, _storage_error(error, errors.StorageUnavailable))
            return
        started = metrics.clock_seconds()
        try:
            with self._writers_lock():
                connection.execute("BEGIN IMMEDIATE")
                for job in batch:
                    self._run_job(connection, job)
                    if not connection.in_transaction:
                        # SQLite rolled the whole transaction back itself (disk
                        # full, I/O error): the batch's earlier work is gone too.
                        raise _RolledBack(job.error)
                connection.execute("COMMIT")
        except Exception as error:
            logger.error("SQLite commit failed: %s", error)
            metrics.commit_failed("sqlite")
            self._fail(batch, _storage_error(error))
            self._drop_connection()
            return
        self.commits += 1
        self.transactions += len(batch)
        metrics.commit_finished("sqlite", started, len(batch))

    @staticmethod
    def _run_job(connection: sqlite3.Connection, job: _Job) -> None:
        connection.execute("SAVEPOINT job")
        try:
            job.result = job.work(connection)
        except sqlite3.Error as error:
            job.error = _storage_error(error)
        except Exception as error:  # the work's own refusal: undo it alone
            job.error = error
        else:
            connection.execute("RELEASE job")
            return
        if connection.in_transaction:
            connection.execute("ROLLBACK TO job")
            connection.execute("RELEASE job")

    def _open(self) -> sqlite3.Connection:
        if self._connection is None:
            self._connection = self._connect()
        return self._connection

    def _drop_connection(self) -> None:
        """Forget the connection (rolling back what it holds); the next batch reconnects."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(sqlite3.Error):
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                connection.close()

    @staticmethod
    def _fail(batch: list[_Job], error: errors.StorageError) -> None:
        """Give ``error`` to the jobs of ``batch`` that have no error of their own (a
        job's refusal stands: its work was undone whether or not the batch commits).

        Each caller gets its own copy: one exception raised in many threads at
        once would collect all their tracebacks.
        """
        for job in batch:
            if job.error is None:
                job.result = None
                job.error = copy.copy(error)
                job.error.__cause__ = error.__cause__


class _RolledBack(Exception):
    def __init__(self, cause: BaseException | None) -> None:
        super().__init__(f"the transaction was rolled back ({cause})")


def _storage_error(
    error: Exception, kind: type[errors.StorageError] = errors.StorageError
) -> errors.StorageError:
    """``error`` as it reaches a caller: a StorageError passes as it is, anything
    else is wrapped in ``kind`` with the library's message."""
    if isinstance(error, errors.StorageError):
        return error
    prefix = "Database unavailable" if kind is errors.StorageUnavailable else "Database error"
    wrapped = kind(f"{prefix}: {error}")
    wrapped.__cause__ = error
    return wrapped
