"""MemoryDriver: the whole store in one process's memory.

One lock serializes transactions. Each transaction works on a copy of the
tables (cheap: the records are immutable and shared) that replaces the
original only if the work succeeds, so a failing transaction leaves nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from runtara import errors
from runtara.storage import base
from runtara_memory.tables import Tables
from runtara_memory.transaction import MemoryTransaction

T = TypeVar("T")


class MemoryDriver(base.StorageDriver):
    url_schemes = ("memory",)

    def __init__(self, url: str | None, *, workers: int = 32) -> None:
        if url not in (None, "", "memory:"):
            raise errors.ConfigError(f"the memory driver takes no URL but 'memory:', not {url!r}")
        self._lock = threading.Lock()
        self._tables: Tables | None = None

    def describe(self) -> str:
        return "memory (everything is lost when the server stops)"

    def migrate(self) -> list[str]:
        with self._lock:
            if self._tables is not None:
                return []
            self._tables = Tables()
            return ["memory tables"]

    def run(self, work: Callable[[base.Transaction], T], *, write: bool = True) -> T:
        with self._lock:
            if self._tables is None:
                raise errors.StorageError("the memory store has no tables: run migrate() first")
            tables = self._tables.copy()
            result = work(MemoryTransaction(tables))
            if write:
                self._tables = tables
            return result

    def check(self) -> None:
        if self._tables is None:
            raise errors.StorageUnavailable("the memory store has no tables yet")

    def close(self) -> None:
        with self._lock:
            self._tables = None
