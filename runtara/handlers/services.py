"""What a handler may use: the storage driver and the clock."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping

import attrs

from runtara import clock
from runtara.storage import base


@attrs.frozen
class Services:
    storage: base.StorageDriver
    now: Callable[[], dt.datetime] = clock.utc_now
    """The server's clock; every stored time comes from it (never from clients)."""
    started: float = attrs.Factory(time.monotonic)
    """``time.monotonic()`` when the server started, for its uptime."""
    counters: Callable[[], Mapping[str, float]] = dict
    """The server's and the driver's counters, by name (see ``GetStats``)."""
