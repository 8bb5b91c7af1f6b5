"""SqliteDriver: the embedded default store, one database file in WAL mode.

Writes go through one writer thread that commits the queued work of all callers
together (see :mod:`group_commit`); read-only work uses a connection per calling
thread. ``synchronous=FULL`` (the default) fsyncs every commit: an acknowledged
write survives a killed process and a power loss. ``synchronous=NORMAL`` also
survives a killed process but may lose the last commits on power loss, for
fewer fsyncs.

URL forms: ``sqlite:PATH``, ``sqlite://PATH`` (relative), ``sqlite:///ABSOLUTE``
or a plain path, optionally followed by ``?synchronous=full|normal`` and
``&busy_timeout_ms=N``. Without a URL the file is ``runtara.db`` in the working
directory.
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
from urllib.parse import parse_qsl

from runtara import errors
from runtara.drivers.sqlite.group_commit import GroupCommitWriter
from runtara.drivers.sqlite.transaction import SqliteTransaction
from runtara.storage import base, migrations

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_FILE = "runtara.db"
_SYNCHRONOUS = ("full", "normal")
_OPTIONS = {"synchronous", "busy_timeout_ms", "mode"}  # mode: accepted from sqlx-style URLs


class SqliteDriver(base.StorageDriver):
    url_schemes = ("sqlite",)

    def __init__(self, url: str | None, *, workers: int = 32) -> None:
        path, options = _parse_url(url)
        self.path = path
        self.synchronous = options.get("synchronous", "full")
        self.busy_timeout_ms = options.get("busy_timeout_ms", 30_000)
        self._writer = GroupCommitWriter(self._connect)
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False

    def describe(self) -> str:
        return f"sqlite {self.path} (WAL, synchronous={self.synchronous.upper()})"

    # --- connections ----------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=self.busy_timeout_ms / 1000,
            )
        except (OSError, sqlite3.Error) as error:
            raise errors.StorageUnavailable(f"cannot open {self.path}: {error}") from error
        try:
            self._use_wal(connection)
            connection.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
            connection.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as error:
            connection.close()
            raise errors.StorageUnavailable(
                f"cannot use {self.path}: {error}{self._read_only_hint()}"
            ) from error
        return connection

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

    def _read_only_hint(self) -> str:
        if os.access(self.path.parent, os.W_OK):
            return ""
        return " (its folder is read-only, and SQLite in WAL mode writes next to the database)"

    def _reader(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
            with self._readers_lock:
                self._readers.append(connection)
        return connection

    # --- contract -------------------------------------------------------------

    def migrate(self) -> list[str]:
        available = migrations.load("sqlite")
        connection = self._connect()
        try:
            # BEGIN IMMEDIATE takes the write lock before reading the ledger, so
            # two servers starting together apply each migration once.
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(
                "CREATE TABLE IF NOT EXISTS runtara_migrations (version INTEGER PRIMARY KEY, "
                "name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            applied = {
                row[0]: migrations.AppliedMigration(row[0], row[1], row[2])
                for row in connection.execute(
                    "SELECT version, name, checksum FROM runtara_migrations"
                )
            }
            todo = migrations.pending(available, applied)
            for migration in todo:
                for statement in _statements(migration.sql):
                    connection.execute(statement)
                connection.execute(
                    "INSERT INTO runtara_migrations (version, name, checksum, applied_at) "
                    "VALUES (?, ?, ?, strftime('%Y-%m-%d %H:%M:%f', 'now'))",
                    (migration.version, migration.name, migration.checksum),
                )
            connection.execute("COMMIT")
            return [migration.name for migration in todo]
        except sqlite3.Error as error:
            raise errors.MigrationError(f"migrating {self.path} failed: {error}") from error
        finally:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            connection.close()

    def run(self, work: Callable[[base.Transaction], T], *, write: bool = True) -> T:
        if self._closed:
            raise errors.StorageUnavailable("the SQLite driver is closed")
        if write:
            return self._writer.submit(lambda connection: work(SqliteTransaction(connection)))
        connection = self._reader()
        try:
            connection.execute("BEGIN")
            try:
                return work(SqliteTransaction(connection))
            finally:
                connection.execute("COMMIT")
        except sqlite3.Error as error:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise errors.StorageError(f"Database error: {error}") from error

    def check(self) -> None:
        # mode=rw: a missing file is unreachable storage, not a new empty database.
        try:
            connection = sqlite3.connect(f"file:{self.path}?mode=rw", uri=True)
            try:
                connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
            finally:
                connection.close()
        except sqlite3.Error as error:
            raise errors.StorageUnavailable(f"cannot open {self.path}: {error}") from error

    def close(self) -> None:
        self._closed = True
        self._writer.close()
        with self._readers_lock:
            for connection in self._readers:
                connection.close()
            self._readers.clear()

    def stats(self) -> dict[str, float]:
        commits = self._writer.commits
        return {
            "commits": commits,
            "transactions": self._writer.transactions,
            "transactions_per_commit": self._writer.transactions / commits if commits else 0.0,
        }


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
