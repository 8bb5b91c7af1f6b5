"""A batch of requests served in one write transaction, each ``run`` a savepoint of it.

The server hands a worker the requests of one event-loop pass together
(:meth:`runtara.storage.base.StorageDriver.run_batch`). The SQLite driver runs
the whole batch as ONE job of its write group: the group opens the
transaction, the requests' handlers run one after the other on the write
connection, and the group commits once. Inside, each :meth:`RequestBatch.run`
keeps the driver's contract alone: a write runs under its own savepoint, so a
refusal or failure undoes that write only and the batch's other writes commit.

Reads of the batch run on the write connection too, so a request sees the
writes of the requests before it in the batch. That reveals nothing
uncommitted to anyone: no reply of the batch leaves before the COMMIT, and
if the COMMIT fails every request of the batch is answered with the storage
error. Reads made elsewhere (other threads, other processes) see the last
committed state, as they always do.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

from runtara import errors

T = TypeVar("T")


class RequestBatch:
    """The batch's open transaction on the write connection."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection
        self.writes = 0
        """Writes run in the batch (refused ones included), for the driver's figures."""

    def run(self, work: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        connection = self.connection
        if not connection.in_transaction:
            # SQLite rolled the transaction back itself (disk full, I/O error) while an
            # earlier request of the batch ran: its writes are gone, and so are the
            # batch's; the group fails the whole batch when it comes to commit.
            raise errors.StorageError(
                "Database error: the transaction of this batch of requests was rolled back"
            )
        try:
            if not write:
                return work(connection)
            self.writes += 1
            connection.execute("SAVEPOINT request")
            try:
                result = work(connection)
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK TO request")
                    connection.execute("RELEASE request")
                raise
            connection.execute("RELEASE request")
            return result
        except sqlite3.Error as error:
            raise errors.StorageError(f"Database error: {error}") from error
