"""The one clock every stored time comes from (tests pass their own ``now``)."""

from __future__ import annotations

import datetime as dt


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
