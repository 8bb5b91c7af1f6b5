"""PostgresDriver: PostgreSQL 13+ through psycopg 3 and a connection pool.

The instance protocol's operations are one statement each: a call of a
server-side function (migration 0006, see
:mod:`runtara.drivers.postgres.operations`) sent in autocommit mode, so that
the call is its whole transaction and costs one round trip. The function locks
the instance's row first, as the engine's rules do.
Everything else (the operators' tools, the launcher) runs through ``run``: the
work runs inside one transaction (READ COMMITTED; ``get_instance`` takes the
instance's row lock in write transactions). The pool holds ``workers``
connections, so a worker never waits for one. Several runtara-core processes
may share one database: the row locks and ``ON CONFLICT`` inserts keep
checkpoints exactly-once and custom signals take-once across them, and
migrations run under an advisory lock.

A call or a transaction that PostgreSQL aborts as a deadlock or a
serialization failure kept nothing, and is sent again (``RETRIES`` attempts in
all): the time is a parameter, so the retry writes what the first attempt
would have.

The SQL is the dialect's named queries (``sql/postgresql/queries.sql``), with
binary results, prepared through psycopg's automatic preparation: a statement
that ran five times on a connection is prepared on its next run, the calls
among the first. Not ``prepare=True``: psycopg forgets a statement whose
first, preparing run fails, while the server keeps it, so every refusal on a
connection where the call never succeeded yet would leave one more prepared
statement in that session (and cost a second round trip). ``stats()`` counts the round
trips: every statement sent, BEGIN and COMMIT (or ROLLBACK) of ``run``
included. psycopg's own upkeep of prepared statements is not counted: the
preparation of a statement on a connection, and the DEALLOCATE ALL after a
rolled-back transaction on a connection that had prepared some.

The server's batches are not grouped here: ``batches_writes`` stays False, so
the server hands this driver its requests one by one, concurrently, each call
its own transaction as above. One transaction per batch would hold every
request's row lock until the batch's COMMIT, so two batches under way at once
(or another runtara-core process) touching two instances in opposite orders
would deadlock, where single-statement calls never hold two instances' locks;
a savepoint per request would add two round trips to each; and a batch's
requests served one after the other on one connection would give up the
pool's concurrency, which is what hides PostgreSQL's round trips.

When the server restarts or drops connections, the requests in flight fail
with :class:`runtara.errors.StorageUnavailable`, the pool is checked in the
background so that broken connections are replaced, and later requests succeed
without restarting runtara-core.

URL: ``postgres://`` or ``postgresql://`` in libpq's URI form.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import psycopg
from psycopg import conninfo
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from runtara import errors, metrics
from runtara.drivers.postgres import refusals
from runtara.drivers.postgres.operations import ServerSideOperations
from runtara.drivers.postgres.transaction import PostgresTransaction, RunningCount
from runtara.storage import base, queries, sqlbase

logger = logging.getLogger(__name__)

T = TypeVar("T")

CONNECT_TIMEOUT = 10
RETRIES = 3
"""Attempts for a call or work that PostgreSQL aborted as a deadlock or serialization failure."""


class PostgresDriver(ServerSideOperations):
    url_schemes = ("postgres", "postgresql")

    def __init__(self, url: str | None, *, workers: int = 32) -> None:
        if not url:
            raise errors.ConfigError(
                "the postgres driver needs --database-url / RUNTARA_DATABASE_URL "
                "(postgresql://user:password@host:port/database)"
            )
        try:
            params = conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError as error:
            raise errors.ConfigError(f"database URL is not a PostgreSQL URL: {error}") from None
        self._url = url
        self._params = params
        self._workers = workers
        self._queries = queries.load("postgresql")
        self._pool: ConnectionPool | None = None
        self._pool_lock = threading.Lock()
        self._checking = False
        self._round_trips = RunningCount()
        self._operations = RunningCount()

    def describe(self) -> str:
        user = self._params.get("user", "")
        host = self._params.get("host", "localhost")
        port = self._params.get("port", "5432")
        database = self._params.get("dbname", "")
        return f"postgresql://{user + '@' if user else ''}{host}:{port}/{database}"

    # --- connections ----------------------------------------------------------

    def _connect(self) -> psycopg.Connection:
        try:
            return psycopg.connect(self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
        except psycopg.Error as error:
            raise errors.StorageUnavailable(
                f"cannot connect to {self.describe()}: {_first_line(error)}"
            ) from None

    def _get_pool(self) -> ConnectionPool:
        if self._pool is None:
            with self._pool_lock:
                if self._pool is None:
                    self._connect().close()  # a clear error now instead of a pool timeout
                    pool = ConnectionPool(
                        self._url,
                        min_size=self._workers,
                        max_size=self._workers + 2,
                        kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT},
                        name="runtara",
                        timeout=CONNECT_TIMEOUT,
                        open=False,
                    )
                    pool.open()
                    self._pool = pool
        return self._pool

    def _replace_broken_connections(self) -> None:
        """After a connection failure, check every idle connection in the background."""
        if self._checking or self._pool is None:
            return
        self._checking = True

        def check() -> None:
            try:
                self._pool.check()
            except Exception as error:  # the database may still be down
                logger.warning("checking database connections failed: %s", _first_line(error))
            finally:
                self._checking = False

        threading.Thread(target=check, name="runtara-pg-check", daemon=True).start()

    # --- contract -------------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply the pending migrations under an advisory lock; refuse
        (StorageUnavailable) a database that does not accept writes."""
        with self._connect() as connection:
            try:
                return sqlbase.migrate(connection, self._queries, connection.execute)
            except (psycopg.OperationalError, pg_errors.ReadOnlySqlTransaction) as error:
                raise errors.StorageUnavailable(
                    f"migrating {self.describe()} failed: {_first_line(error)}"
                ) from None
            except psycopg.Error as error:
                raise errors.MigrationError(
                    f"migrating {self.describe()} failed: {_first_line(error)}"
                ) from None

    def run(self, work: Callable[[base.Transaction], T], *, write: bool = True) -> T:
        def in_transaction(connection: psycopg.Connection) -> T:
            self._round_trips.add(2)  # BEGIN, and COMMIT or ROLLBACK
            with metrics.commit_timer("postgresql", write), connection.transaction():
                return work(
                    PostgresTransaction(connection, self._queries, self._round_trips, write=write)
                )

        return self._attempts(in_transaction)

    def _call(self, name: str, params: Mapping[str, Any]) -> tuple | None:
        sql = self._queries[name]

        def call(connection: psycopg.Connection) -> tuple | None:
            self._round_trips.add()
            with metrics.commit_timer("postgresql", True):  # each call is its own transaction
                return connection.execute(sql, params, binary=True).fetchone()

        return self._attempts(call)

    def _attempts(self, use: Callable[[psycopg.Connection], T]) -> T:
        """``use`` a pooled connection, again after a deadlock or serialization
        failure; library errors become the contract's."""
        pool = self._get_pool()
        self._operations.add()
        for attempt in range(1, RETRIES + 1):
            try:
                with pool.connection() as connection:
                    return use(connection)
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure) as error:
                if attempt == RETRIES:
                    raise errors.StorageError(f"Database error: {_first_line(error)}") from None
                logger.info("retrying a transaction aborted by PostgreSQL: %s", _first_line(error))
            except PoolTimeout:
                raise errors.StorageUnavailable(
                    f"no connection to {self.describe()} within {CONNECT_TIMEOUT}s"
                ) from None
            except psycopg.OperationalError as error:
                self._replace_broken_connections()
                raise errors.StorageUnavailable(
                    f"Database unavailable: {_first_line(error)}"
                ) from None
            except psycopg.Error as error:
                refused = refusals.refusal(error)
                if refused is not None:
                    raise refused from None
                raise errors.StorageError(f"Database error: {_first_line(error)}") from None
        raise AssertionError("unreachable")

    def exists(self) -> bool:
        """Whether the schema on the URL's search path has the migrations ledger."""
        with self._connect() as connection:
            try:
                return sqlbase.has_schema(connection, self._queries)
            except psycopg.Error as error:
                raise errors.StorageUnavailable(_first_line(error)) from None

    def check(self) -> None:
        """A new connection takes the schema lock and a row lock (rolled back): a
        standby or a read-only database fails here."""
        with self._connect() as connection:
            try:
                sqlbase.probe_write(connection, self._queries)
            except psycopg.Error as error:
                raise errors.StorageUnavailable(
                    f"{self.describe()} does not accept writes: {_first_line(error)}"
                ) from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def stats(self) -> dict[str, float]:
        """``operations``: operation calls and ``run`` calls; ``round_trips``: the
        statements they sent (see the module's docstring); the pool's counters
        (``pool_`` prefix) once it is open."""
        counters = {"operations": self._operations.count, "round_trips": self._round_trips.count}
        if self._pool is not None:
            counters.update({f"pool_{key}": value for key, value in self._pool.get_stats().items()})
        return counters


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
