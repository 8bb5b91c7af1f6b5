"""SqliteDriver: the embedded default store, one database file in WAL mode.

Writes go through a write group (:mod:`write_group`): concurrent callers commit
together on one write connection, the work running on a caller's own thread.
Read-only work uses a read-only connection per calling thread, so reading never
creates a database. A batch of the server's requests (:meth:`run_batch`) is
one job of the write group: its reads and writes all run in that job's
transaction (see :mod:`batch`). The SQL is the dialect's named queries
(``sql/sqlite/queries.sql``), run by :class:`runtara.storage.sqlbase.SqlTransaction`.
``synchronous=FULL`` (the default) fsyncs every commit: an
acknowledged write survives a killed process and a power loss.
``synchronous=NORMAL`` also survives a killed process but may lose the last
commits on power loss, for fewer fsyncs.

URL forms: ``sqlite:PATH``, ``sqlite://PATH`` (relative), ``sqlite:///ABSOLUTE``
or a plain path, optionally followed by ``?synchronous=full|normal``,
``&busy_timeout_ms=N`` (how long to wait for the database: another process's
write lock, or this process's commits) and ``&max_batch=N`` (most write-group
jobs committed together; a batch of the server's requests is one job).
Without a URL the file is ``runtara.db`` in the working directory.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qsl, quote

from runtara import errors
from runtara.drivers.sqlite import diagnosis
from runtara.drivers.sqlite.batch import RequestBatch
from runtara.drivers.sqlite.file_lock import FileLock
from runtara.drivers.sqlite.transaction import SqliteTransaction
from runtara.drivers.sqlite.write_group import WriteGroup
from runtara.storage import base, queries, sqlbase

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_FILE = "runtara.db"
_SYNCHRONOUS = ("full", "normal")
WRITE_CACHE_KIB = 64 * 1024
"""The write connection's page cache (one connection: reads keep the default)."""
_OPTIONS = {"synchronous", "busy_timeout_ms", "max_batch", "mode"}  # mode: sqlx-style URLs
_UNAVAILABLE = ("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_FULL", "SQLITE_IOERR", "SQLITE_PERM")
"""Error names (and their extended forms) that mean the file cannot be used, not a bad migration."""


class SqliteDriver(base.StorageDriver):
    url_schemes = ("sqlite",)
    batches_writes = True

    def __init__(self, url: str | None, *, workers: int = 32) -> None:
        path, options = _parse_url(url)
        self.path = path
        self.synchronous = options.get("synchronous", "full")
        self.busy_timeout_ms = options.get("busy_timeout_ms", 30_000)
        self.max_batch = options.get("max_batch", 256)
        self._queries = queries.load("sqlite")
        self._writers = FileLock(
            path.with_name(path.name + "-writers.lock"), timeout=self.busy_timeout_ms / 1000
        )
        self._group = WriteGroup(
            self._connect,
            max_batch=self.max_batch,
            wait_timeout=self.busy_timeout_ms / 1000,
            writers_lock=self._writers.held,
        )
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._batched = (0, 0)
        """Batches committed, and the writes they held (under ``_readers_lock``)."""
        self._closed = False

    def describe(self) -> str:
        return f"sqlite {self.path} (WAL, synchronous={self.synchronous.upper()})"

    # --- connections ----------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """The write connection (creating the file if it is missing)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=self.busy_timeout_ms / 1000,
            )
        except (OSError, sqlite3.Error) as error:
            raise errors.StorageUnavailable(self._cannot("open", error)) from error
        try:
            self._use_wal(connection)
            connection.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
            connection.execute("PRAGMA foreign_keys = ON")
            # Writes change index pages all over a large store (prune most of all);
            # SQLite's default 2 MiB cache made the worst prune batch 5x slower.
            connection.execute(f"PRAGMA cache_size = -{WRITE_CACHE_KIB}")
        except sqlite3.Error as error:
            connection.close()
            raise errors.StorageUnavailable(self._cannot("use", error)) from error
        return connection

    def _connect_existing(self, mode: str) -> sqlite3.Connection:
        """A connection to the file as it is (``mode`` ro or rw): never creates it."""
        try:
            return sqlite3.connect(
                f"file:{quote(str(self.path))}?mode={mode}",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=self.busy_timeout_ms / 1000,
            )
        except sqlite3.Error as error:
            raise errors.StorageUnavailable(self._cannot("open", error)) from error

    def _use_wal(self, connection: sqlite3.Connection) -> None:
        """Switch the file to WAL (once per file: the mode is persistent).

        Switching does not wait on the busy timeout, so a fresh file that
        another process is setting up at the same moment is retried here.
        """
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        while connection.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            try:
                mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
                continue
            if mode.lower() != "wal":
                raise errors.StorageError(f"{self.path}: SQLite refused WAL mode ({mode})")

    def _cannot(self, action: str, error: BaseException) -> str:
        """``cannot <action> PATH: <reason>``, the reason found on disk when there is one."""
        problem = diagnosis.write_problem(self.path)
        if problem is None and not self.path.exists():
            problem = "there is no database file"
        detail = f"{problem} (SQLite: {error})" if problem else str(error)
        return f"cannot {action} {self.path}: {detail}"

    def _reader(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect_existing("ro")
            self._local.connection = connection
            with self._readers_lock:
                self._readers.append(connection)
        return connection

    # --- contract -------------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply the pending migrations; refuse (StorageUnavailable, naming the file
        and the reason) a database that cannot be written."""
        self._require_room()
        connection = self._connect()

        def run_script(script: str) -> None:
            for statement in _statements(script):
                connection.execute(statement)

        try:
            return sqlbase.migrate(connection, self._queries, run_script)
        except sqlite3.Error as error:
            if _is_unavailable(error):
                raise errors.StorageUnavailable(self._cannot("write", error)) from error
            raise errors.MigrationError(f"migrating {self.path} failed: {error}") from error
        finally:
            connection.close()

    def run(self, work: Callable[[base.Transaction], T], *, write: bool = True) -> T:
        if self._closed:
            raise errors.StorageUnavailable("the SQLite driver is closed")
        batch = getattr(self._local, "batch", None)
        if batch is not None:
            return batch.run(
                lambda connection: work(SqliteTransaction(connection, self._queries, write=write)),
                write=write,
            )
        if write:
            return self._group.run(
                lambda connection: work(SqliteTransaction(connection, self._queries, write=True))
            )
        connection = self._reader()
        try:
            connection.execute("BEGIN")
            try:
                return work(SqliteTransaction(connection, self._queries, write=False))
            finally:
                connection.execute("COMMIT")
        except sqlite3.Error as error:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise errors.StorageError(f"Database error: {error}") from error

    def run_batch(self, work: Callable[[], T]) -> T:
        """Run ``work`` as one job of the write group: every ``run`` it makes on the
        thread that runs it goes into that job's transaction (a write under its own
        savepoint), committed once. The job may run on another caller's thread
        (the group's leader), so the batch is bound to whichever thread runs it."""
        if self._closed:
            raise errors.StorageUnavailable("the SQLite driver is closed")
        batch: RequestBatch | None = None

        def serve(connection: sqlite3.Connection) -> T:
            nonlocal batch
            batch = self._local.batch = RequestBatch(connection)
            try:
                return work()
            finally:
                self._local.batch = None

        result = self._group.run(serve)
        with self._readers_lock:
            batches, writes = self._batched
            self._batched = (batches + 1, writes + batch.writes)
        return result

    def exists(self) -> bool:
        """Whether the file exists and holds the migrations ledger."""
        if not self.path.exists():
            return False
        connection = self._connect_existing("ro")
        try:
            return sqlbase.has_schema(connection, self._queries)
        except sqlite3.Error as error:
            raise errors.StorageUnavailable(self._cannot("read", error)) from error
        finally:
            connection.close()

    def check(self) -> None:
        """The file exists, is migrated, takes the write lock and a write (rolled
        back), and its disk has room."""
        connection = self._connect_existing("rw")
        try:
            sqlbase.probe_write(connection, self._queries)
        except sqlite3.Error as error:
            raise errors.StorageUnavailable(self._cannot("write", error)) from error
        finally:
            connection.close()
        self._require_room()

    def _require_room(self) -> None:
        free = diagnosis.free_bytes(self.path)
        if free is not None and free < diagnosis.FULL_BELOW:
            raise errors.StorageUnavailable(
                f"cannot write {self.path}: the disk is full ({free} bytes free)"
            )

    def close(self) -> None:
        self._closed = True
        self._group.close()
        self._writers.close()
        with self._readers_lock:
            for connection in self._readers:
                connection.close()
            self._readers.clear()

    def stats(self) -> dict[str, float]:
        """``commits``; ``transactions``: the writes they held (each ``run`` of a batch
        counts, not the batch's own job of the write group)."""
        commits = self._group.commits
        batches, writes = self._batched
        transactions = self._group.transactions - batches + writes
        return {
            "commits": commits,
            "transactions": transactions,
            "transactions_per_commit": transactions / commits if commits else 0.0,
        }


def _is_unavailable(error: sqlite3.Error) -> bool:
    name = getattr(error, "sqlite_errorname", "") or ""
    return name.startswith(_UNAVAILABLE)


def _parse_url(url: str | None) -> tuple[Path, dict]:
    if url is None or url == "":
        return Path(DEFAULT_FILE).absolute(), {}
    location, _, query = url.partition("?")
    if location.startswith("sqlite:"):
        location = location[len("sqlite:") :]
        if location.startswith("//"):
            location = location[2:]
    if location in ("", ":memory:") or location.startswith(":memory"):
        raise errors.ConfigError(
            f"database URL {url!r}: an in-memory SQLite database cannot be shared by the "
            "server's threads; name a file, e.g. sqlite:runtara.db"
        )
    options: dict = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in _OPTIONS:
            raise errors.ConfigError(
                f"database URL {url!r}: unknown SQLite option '{key}' "
                f"(known: {', '.join(sorted(_OPTIONS - {'mode'}))})"
            )
        if key == "synchronous":
            if value.lower() not in _SYNCHRONOUS:
                raise errors.ConfigError(
                    f"database URL {url!r}: synchronous must be full or normal, not {value!r}"
                )
            options[key] = value.lower()
        elif key == "busy_timeout_ms":
            if not value.isdigit():
                raise errors.ConfigError(
                    f"database URL {url!r}: busy_timeout_ms must be a whole number of milliseconds"
                )
            options[key] = int(value)
        elif key == "max_batch":
            if not value.isdigit() or int(value) < 1:
                raise errors.ConfigError(
                    f"database URL {url!r}: max_batch must be a whole number of at least 1"
                )
            options[key] = int(value)
    return Path(os.path.expanduser(location)).absolute(), options


def _statements(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies whole."""
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip() and not all(
        part.strip().startswith("--") or not part.strip() for part in current.splitlines()
    ):
        raise errors.MigrationError(f"incomplete SQL statement at the end of: {current[:80]!r}")
    return statements
