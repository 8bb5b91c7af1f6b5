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

The server's requests arrive already grouped: the server hands the driver the
requests of one event-loop pass as one batch, one batch at a time, and the
batch is ONE job here (see :mod:`batch`), whose own savepoints isolate its
requests. So the leader election below rarely has more than one server job to
elect among; it orders the batches with the other writers of the process
(management requests, the launcher, background work), and ``max_batch`` counts
jobs, a batch of requests as one.

What every caller can rely on:

- Its work runs at most once, and never again after it raised: a job that
  raises undoes only its own work (its savepoint) and its exception, whatever
  it is (a ``KeyboardInterrupt`` or ``SystemExit`` too), reaches its caller
  alone; the other jobs of the batch commit. (Rolling the whole batch back
  would not make anything safer: the savepoint undoes the job's work however
  it ended. An interruption that arrives in the leader's thread while another
  caller's work runs there is taken as that work's own.)
- It gets its committed result or an exception, never nothing: a result is
  handed over only after the COMMIT succeeded.
- Failures of the store (opening the connection, BEGIN, a transaction SQLite
  rolled back on its own, COMMIT) fail the jobs of that batch with
  :class:`runtara.errors.StorageError` (``StorageUnavailable`` when the
  database cannot be opened); the connection is dropped and the next batch
  opens a new one, so the group keeps serving once the cause is gone.
- Anything else that ends the group's own steps in the leader's thread (a
  ``KeyboardInterrupt`` there, a bug) is raised in that thread alone; the
  other jobs of the batch are told that their write was not applied, or that
  it may have been applied if the COMMIT had started, or get their results if
  the COMMIT had returned.
- A caller interrupted while it waits (a ``KeyboardInterrupt`` in the main
  thread, say) gets the interruption: a job still queued is withdrawn and
  never runs, and if it had just been made the leader, it passes the
  leadership on first.
- Its wait is bounded by ``wait_timeout`` (then
  :class:`runtara.errors.StorageUnavailable`): a job that was still queued is
  withdrawn and never runs; a job already in a batch may still commit, and the
  message says so. The leader's own wait for the writers' lock of other
  processes is bounded too (see :mod:`file_lock`), and after that only
  SQLite's busy timeout applies.
- After :meth:`WriteGroup.close`, a batch under way finishes and closes the
  connection; later batches fail without opening one.

The invariants the code keeps (all under ``_lock``):

1. Not leading implies an empty queue: every queued job has a leader to come.
2. A leader's own job is ``queue[0]`` when it takes its batch: it queued into an
   empty queue, or it was designated as successor, which is always ``queue[0]``.
3. Jobs leave the queue only into the leader's batch, or when their own caller
   stops waiting while they are still queued.
4. ``lead`` marks the job whose owner must lead and has not taken its batch yet
   (the first job queued when nobody leads, or a designated successor). Such a
   job never withdraws on a timeout: it leads. Interrupted, its owner
   designates the next queued job, or stops the leading when there is none.
5. A job's ``_wake`` is released at most once, by another thread: to designate
   it, or to deliver the outcome of a batch another leader ran. So a wake-up is
   never lost (a release before the sleep is kept) and never taken for another.
6. The connection is used only by the leader, between taking its batch and
   handing over; ``close`` closes it only when no batch is under way.
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

    ``_wake`` is held from creation and released at most once by another thread:
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


class _Batch:
    """The jobs a leader runs in one transaction, and how far their COMMIT got."""

    __slots__ = ("jobs", "committing", "committed")

    def __init__(self, jobs: list[_Job]) -> None:
        self.jobs = jobs
        self.committing = False
        self.committed = False


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
        self._in_batch = False
        """A leader is between taking its batch and handing over."""
        self._closed = False
        self._connection: sqlite3.Connection | None = None
        self.commits = 0
        """Batches committed."""
        self.transactions = 0
        """Jobs in the committed batches (refused ones included: they ran)."""

    def run(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``work(connection)`` inside a write transaction and return its result
        once committed; its exception (after undoing its work) if it raises."""
        job = _Job(work)
        try:
            with self._lock:
                self._queue.append(job)
                leads = job.lead = not self._leading
                self._leading = True
            if not leads:
                leads = self._wait(job)
            if leads:
                self._lead(job)
        except BaseException:
            self._withdraw(job)  # wherever the interruption struck
            raise
        return job.outcome()

    @property
    def queued(self) -> int:
        """Jobs waiting for a batch (not the ones being committed)."""
        return len(self._queue)

    def close(self) -> None:
        """Close the write connection, now or when the batch under way ends; later
        batches fail. Call when no more work is submitted."""
        with self._lock:
            self._closed = True
            if self._in_batch:
                return
            connection, self._connection = self._connection, None
        _close(connection)

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

    def _withdraw(self, job: _Job) -> None:
        """Take back the job of a caller that stopped waiting, if it is still queued;
        if it had been made the leader, pass the leadership on."""
        with self._lock:
            if job.state is not _QUEUED or job not in self._queue:
                return  # in a batch or done: its leader completes it; or already withdrawn
            self._queue.remove(job)
            if not job.lead:
                return
            if self._queue:
                self._designate(self._queue[0])
            else:
                self._leading = False

    # --- the leader -----------------------------------------------------------------

    def _lead(self, own: _Job) -> None:
        with self._lock:
            own.lead = False
            count = min(self._max_batch, len(self._queue))
            batch = _Batch([self._queue.popleft() for _ in range(count)])
            for job in batch.jobs:
                job.state = _RUNNING
            self._in_batch = True
        try:
            self._commit(batch)
        except BaseException:
            # An interruption of the group's own steps (work keeps its exceptions):
            # this thread gets it, and every job of the batch still gets an outcome.
            self._abandon(batch)
            raise
        finally:
            self._hand_over(batch, own)

    def _hand_over(self, batch: _Batch, own: _Job) -> None:
        """Give the leadership to the next queued job, then release the batch's callers.

        The successor is woken first, so the next batch starts while the callers
        of this one are still waking up (measured: about 9 % more 64 KiB
        checkpoints per second).
        """
        connection = None
        with self._lock:
            self._in_batch = False
            if self._closed:
                connection, self._connection = self._connection, None
            if self._queue:
                self._designate(self._queue[0])
            else:
                self._leading = False
            for job in batch.jobs:
                job.state = _DONE
                if job is not own:
                    job.wake()
        _close(connection)

    @staticmethod
    def _designate(successor: _Job) -> None:
        successor.lead = True
        successor.wake()

    def _commit(self, batch: _Batch) -> None:
        """Run the batch in one transaction; set each job's result or error."""
        try:
            connection = self._open()
        except Exception as error:
            self._fail(batch.jobs, _storage_error(error, errors.StorageUnavailable))
            return
        started = metrics.clock_seconds()
        try:
            with self._writers_lock():
                connection.execute("BEGIN IMMEDIATE")
                for job in batch.jobs:
                    self._run_job(connection, job)
                    if not connection.in_transaction:
                        # SQLite rolled the whole transaction back itself (disk
                        # full, I/O error): the batch's earlier work is gone too.
                        raise _RolledBack(job.error)
                batch.committing = True
                connection.execute("COMMIT")
                batch.committed = True
        except Exception as error:
            logger.error("SQLite commit failed: %s", error)
            metrics.commit_failed("sqlite")
            self._fail(batch.jobs, _storage_error(error))
            self._drop_connection()
            return
        self.commits += 1
        self.transactions += len(batch.jobs)
        metrics.commit_finished("sqlite", started, len(batch.jobs))

    def _abandon(self, batch: _Batch) -> None:
        """Complete the jobs of a batch whose leader was interrupted, saying what is
        known of their writes."""
        if batch.committed:
            return  # every job has its outcome
        if batch.committing:
            message = "the write was interrupted while committing; it may have been applied"
        else:
            message = "the write was interrupted before its commit; it was not applied"
        self._fail(batch.jobs, errors.StorageError(f"Database error: {message}"))
        self._drop_connection()

    @staticmethod
    def _run_job(connection: sqlite3.Connection, job: _Job) -> None:
        connection.execute("SAVEPOINT job")
        try:
            job.result = job.work(connection)
        except sqlite3.Error as error:
            job.error = _storage_error(error)
        except BaseException as error:  # the work's own refusal or interruption: undo it alone
            job.error = error
        else:
            connection.execute("RELEASE job")
            return
        if connection.in_transaction:
            connection.execute("ROLLBACK TO job")
            connection.execute("RELEASE job")

    def _open(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise errors.StorageUnavailable("Database unavailable: the database was closed")
            if self._connection is not None:
                return self._connection
        connection = self._connect()  # outside the lock: it may wait for the file
        with self._lock:
            if not self._closed:
                self._connection = connection
                return connection
        connection.close()
        raise errors.StorageUnavailable("Database unavailable: the database was closed")

    def _drop_connection(self) -> None:
        """Forget the connection (rolling back what it holds); the next batch reconnects."""
        with self._lock:
            connection, self._connection = self._connection, None
        _close(connection)

    @staticmethod
    def _fail(jobs: list[_Job], error: errors.StorageError) -> None:
        """Give ``error`` to the jobs that have no error of their own (a job's
        refusal stands: its work was undone whether or not the batch commits).

        Each caller gets its own copy: one exception raised in many threads at
        once would collect all their tracebacks.
        """
        for job in jobs:
            if job.error is None:
                job.result = None
                job.error = copy.copy(error)
                job.error.__cause__ = error.__cause__


class _RolledBack(Exception):
    def __init__(self, cause: BaseException | None) -> None:
        super().__init__(f"the transaction was rolled back ({cause})")


def _close(connection: sqlite3.Connection | None) -> None:
    """Close a connection, rolling back what it holds."""
    if connection is None:
        return
    with contextlib.suppress(sqlite3.Error):
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        connection.close()


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
