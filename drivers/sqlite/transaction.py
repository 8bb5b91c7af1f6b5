"""The SQL transaction on a sqlite3 connection: times as sortable UTC text."""

from __future__ import annotations

import datetime as dt
import sqlite3

from runtara.storage import sqlbase
from runtara.storage.queries import Queries


def to_text(value: dt.datetime) -> str:
    if value.utcoffset():
        value = value.astimezone(dt.timezone.utc)
    # isoformat is much cheaper than strftime; its first 26 characters are
    # exactly YYYY-MM-DD HH:MM:SS.ffffff.
    return value.isoformat(sep=" ", timespec="microseconds")[:26]


def from_text(value: str | None) -> dt.datetime | None:
    """Read our format and the two upstream ones (``YYYY-MM-DD HH:MM:SS``, RFC 3339)."""
    if value is None:
        return None
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc)


class SqliteTransaction(sqlbase.SqlTransaction):
    """Runs on a connection already inside a transaction (or savepoint)."""

    _time = staticmethod(to_text)
    _read_time = staticmethod(from_text)

    def __init__(self, connection: sqlite3.Connection, queries: Queries, *, write: bool) -> None:
        super().__init__(queries, connection.execute, write=write)
