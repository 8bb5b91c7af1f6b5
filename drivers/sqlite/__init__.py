"""The embedded default: SQLite through the standard library's sqlite3."""

from __future__ import annotations

from runtara.drivers.sqlite.driver import SqliteDriver

__all__ = ["SqliteDriver"]
