"""What a handler may use: the storage driver, the clock, and the server's figures."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import attrs

from runtara import clock, errors
from runtara.storage import base

logger = logging.getLogger(__name__)


class StorageHealth:
    """Whether the storage's last operations failed, and why.

    The first failure after a success is logged at warning level (later ones
    of the same spell are not), and the reason is kept for health checks until
    an operation succeeds again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.problem: str | None = None
        """The storage error of the current spell of failures, or None."""

    def failed(self, error: errors.StorageError) -> None:
        with self._lock:
            first = self.problem is None
            self.problem = str(error)
        if first:
            logger.warning("storage operations are failing: %s", error)

    def succeeded(self) -> None:
        if self.problem is not None:
            with self._lock:
                if self.problem is None:
                    return
                self.problem = None
            logger.warning("storage operations succeed again")


@attrs.frozen
class Services:
    storage: base.StorageDriver
    now: Callable[[], dt.datetime] = clock.utc_now
    """The server's clock; every stored time comes from it (never from clients)."""
    started: float = attrs.Factory(time.monotonic)
    """``time.monotonic()`` when the server started, for its uptime."""
    counters: Callable[[], Mapping[str, float]] = dict
    """The server's and the driver's counters, by name (see ``GetStats``)."""
    storage_health: StorageHealth = attrs.Factory(StorageHealth)
    runs_dir: Path | None = None
    """Where the launched instances' logs are (``--runs-dir``), for ReadLog."""
