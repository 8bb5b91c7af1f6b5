"""One writer thread that commits the work of many callers together.

SQLite allows one writer at a time, and a durable commit costs an fsync. Callers
queue their transaction functions; the writer runs every queued function inside
one transaction, each under its own savepoint (so a failing one is undone
alone), commits once, and only then releases the callers. A reply built from a
result therefore always describes committed data.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

from runtara import errors

logger = logging.getLogger(__name__)


class _Job:
    __slots__ = ("work", "result", "error", "_done")

    def __init__(self, work: Callable[[sqlite3.Connection], Any]) -> None:
        self.work = work
        self.result: Any = None
        self.error: BaseException | None = None
        self._done = threading.Lock()
        self._done.acquire()

    def finish(self) -> None:
        self._done.release()

    def wait(self) -> Any:
        self._done.acquire()
        if self.error is not None:
            raise self.error
        return self.result


_STOP = object()


class GroupCommitWriter:
    """Owns the write connection; ``submit`` blocks until the work is committed."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], *, max_batch: int = 256) -> None:
        self._connect = connect
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="runtara-sqlite-writer", daemon=True)
        self._started = False
        self._start_lock = threading.Lock()
        self.commits = 0
        self.transactions = 0

    def submit(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        if not self._started:
            with self._start_lock:
                if not self._started:
                    self._thread.start()
                    self._started = True
        job = _Job(work)
        self._queue.put(job)
        return job.wait()

    def close(self) -> None:
        if self._started:
            self._queue.put(_STOP)
            self._thread.join()

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            batch = [item]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    self._queue.put(_STOP)
                    break
                batch.append(item)
            try:
                if connection is None:
                    connection = self._connect()
                self._commit_batch(connection, batch)
            except sqlite3.Error as error:
                logger.error("SQLite commit failed: %s", error)
                failure = errors.StorageError(f"Database error: {error}")
                for job in batch:
                    if job.error is None:
                        job.error = failure
                if connection is not None:  # start afresh once the cause is gone
                    connection.close()
                    connection = None
            finally:
                for job in batch:
                    job.finish()
        if connection is not None:
            connection.close()

    def _commit_batch(self, connection: sqlite3.Connection, batch: list[_Job]) -> None:
        if not self._try_batch(connection, batch):
            # Some work refused or failed: undo everything, then run each job
            # under its own savepoint so that only the failing ones are undone.
            for job in batch:
                job.result = job.error = None
            connection.execute("BEGIN IMMEDIATE")
            try:
                for job in batch:
                    self._run_job(connection, job)
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
        self.commits += 1
        self.transactions += len(batch)

    @staticmethod
    def _try_batch(connection: sqlite3.Connection, batch: list[_Job]) -> bool:
        """Run the whole batch in one transaction without savepoints (the common
        case: two statements fewer per job); False, with nothing kept, if any work raised."""
        connection.execute("BEGIN IMMEDIATE")
        try:
            for job in batch:
                job.result = job.work(connection)
        except Exception:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            return False
        try:
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return True

    @staticmethod
    def _run_job(connection: sqlite3.Connection, job: _Job) -> None:
        connection.execute("SAVEPOINT job")
        try:
            job.result = job.work(connection)
        except sqlite3.Error as error:
            job.error = errors.StorageError(f"Database error: {error}")
            job.error.__cause__ = error
        except Exception as error:  # the work's own refusal: undo it alone
            job.error = error
        if job.error is None:
            connection.execute("RELEASE job")
            return
        if not connection.in_transaction:
            # SQLite rolled the whole transaction back itself (disk full, I/O
            # error): the batch's earlier work is gone too, so it all fails.
            raise sqlite3.OperationalError(f"transaction rolled back: {job.error}")
        connection.execute("ROLLBACK TO job")
        connection.execute("RELEASE job")
