"""The SQL transaction on a psycopg connection."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping
from typing import Any

import psycopg

from runtara.storage import sqlbase
from runtara.storage.queries import Queries


def _same(value: dt.datetime) -> dt.datetime:
    return value


def utc(value: dt.datetime | None) -> dt.datetime | None:
    """A time read from PostgreSQL (in the session's time zone) as an aware UTC datetime."""
    return None if value is None else value.astimezone(dt.timezone.utc)


class RunningCount:
    """A running total, safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def add(self, statements: int = 1) -> None:
        with self._lock:
            self.count += statements


class PostgresTransaction(sqlbase.SqlTransaction):
    """Runs on a connection inside ``conn.transaction()``; counts each statement in
    ``round_trips``."""

    _time = staticmethod(_same)
    _read_time = staticmethod(utc)

    def __init__(
        self,
        connection: psycopg.Connection,
        queries: Queries,
        round_trips: RunningCount,
        *,
        write: bool,
    ) -> None:
        def execute(sql: str, params: Mapping[str, Any]) -> psycopg.Cursor:
            round_trips.add()
            # Binary results: bytea arrives as bytes, not as hex text twice its size.
            return connection.execute(sql, params, binary=True)

        super().__init__(queries, execute, write=write)
