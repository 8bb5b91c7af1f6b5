"""The SQL transaction on a psycopg connection."""

from __future__ import annotations

import datetime as dt
import functools

import psycopg

from runtara.storage import sqlbase
from runtara.storage.queries import Queries


def _same(value: dt.datetime) -> dt.datetime:
    return value


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else value.astimezone(dt.timezone.utc)


class PostgresTransaction(sqlbase.SqlTransaction):
    """Runs on a connection inside ``conn.transaction()``."""

    _time = staticmethod(_same)
    _read_time = staticmethod(_utc)

    def __init__(self, connection: psycopg.Connection, queries: Queries, *, write: bool) -> None:
        super().__init__(
            queries,
            # Binary results: bytea arrives as bytes, not as hex text twice its size.
            functools.partial(connection.execute, binary=True),
            lambda sql, params: connection.cursor().executemany(sql, params),
            write=write,
        )
