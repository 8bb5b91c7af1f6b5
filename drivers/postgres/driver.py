"""PostgresDriver: PostgreSQL 13+ through psycopg 3 and a connection pool.

Each ``run`` borrows a pooled connection and runs the work inside one
transaction (READ COMMITTED; ``get_instance`` takes the instance's row lock in
write transactions). The pool holds ``workers`` connections, so a worker never
waits for one. Several runtara-core processes may share one database: the row
locks and ``ON CONFLICT`` inserts keep checkpoints exactly-once and custom
signals take-once across them, and migrations run under an advisory lock.

The SQL is the dialect's named queries (``sql/postgresql/queries.sql``), run by
:class:`runtara.storage.sqlbase.SqlTransaction` with binary results and
psycopg's automatic prepared statements.

When the server restarts or drops connections, the requests in flight fail
with :class:`runtara.errors.StorageUnavailable`, the pool is checked in the
background so that broken connections are replaced, and later requests succeed
without restarting runtara-core.

URL: ``postgres://`` or ``postgresql://`` in libpq's URI form.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

import psycopg
from psycopg import conninfo
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from runtara import errors
from runtara.drivers.postgres.transaction import PostgresTransaction
from runtara.storage import base, queries, sqlbase

logger = logging.getLogger(__name__)

T = TypeVar("T")

CONNECT_TIMEOUT = 10
RETRIES = 3
"""Attempts for work that PostgreSQL aborted as a deadlock or serialization failure."""


class PostgresDriver(base.StorageDriver):
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
        pool = self._get_pool()
        for attempt in range(1, RETRIES + 1):
            try:
                with pool.connection() as connection:
                    with connection.transaction():
                        return work(PostgresTransaction(connection, self._queries, write=write))
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
        if self._pool is None:
            return {}
        return {f"pool_{key}": value for key, value in self._pool.get_stats().items()}


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
