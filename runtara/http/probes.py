"""``/readyz``: whether this server can do its work now, and why not.

Ready means: the QUIC port is bound and its event loop answers, the storage
accepts a write right now (:meth:`StorageDriver.check`, which takes the write
lock and rolls a write back), and no storage operation of the server failed
since the previous probe (the server's storage-failure state). A spell of
failures is over once the storage took the probe's write: the probe says so
to the server's state, so that an idle server does not stay unready for want
of a request that succeeds. The reason names the storage's user, host or
files: the endpoint tells it only to a caller with a credential. ``/healthz``
needs none of this: the process answering is the whole check.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from runtara import errors
from runtara.handlers.services import StorageHealth
from runtara.storage import base

FRESH_FOR = 1.0
"""Seconds an answer is reused: probes arriving together cost one storage check."""


class Readiness:
    """``quic_serving`` says whether the QUIC side serves; ``storage_health`` is
    the server's storage-failure state."""

    def __init__(
        self,
        storage: base.StorageDriver,
        storage_health: StorageHealth,
        quic_serving: Callable[[], bool],
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._storage = storage
        self._storage_health = storage_health
        self._quic_serving = quic_serving
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._answered_at = float("-inf")
        self._answer: str | None = None

    def problem(self) -> str | None:
        """Why the server is not ready, or None when it is."""
        with self._lock:
            if self._monotonic() - self._answered_at >= FRESH_FOR:
                self._answer = self._check()
                self._answered_at = self._monotonic()
            return self._answer

    def _check(self) -> str | None:
        if not self._quic_serving():
            return "the QUIC port is not serving"
        problem = self._storage_health.problem
        try:
            self._storage.check()
        except errors.StorageError as error:
            return f"the storage does not accept writes: {error}"
        if problem is not None:
            self._storage_health.succeeded()
            return f"storage operations failed since the last probe: {problem}"
        return None
