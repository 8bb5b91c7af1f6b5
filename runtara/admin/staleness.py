"""Marking instances failed that stopped talking (``--stale-after``).

Upstream's environment service does this; runtara-core alone must
too, so that operators and wake schedulers see the truth. An instance is stale
when it is running and no request of it arrived for ``stale_after``.
"""

from __future__ import annotations

import datetime as dt
import logging

from runtara.storage import base, operations

logger = logging.getLogger(__name__)


def mark_stale(
    storage: base.StorageDriver, now: dt.datetime, stale_after: float, batch: int = 100
) -> list[str]:
    """Fail every stale instance, one transaction each; return their ids."""
    cutoff = now - dt.timedelta(seconds=stale_after)
    failed: list[str] = []
    while True:
        candidates = storage.run(lambda tx: tx.list_stale_instances(cutoff, batch), write=False)
        changed = [
            i.instance_id
            for i in candidates
            if _fail_if_stale(storage, i.instance_id, cutoff, now, stale_after)
        ]
        failed.extend(changed)
        if len(candidates) < batch or not changed:
            return failed


def _fail_if_stale(
    storage: base.StorageDriver,
    instance_id: str,
    cutoff: dt.datetime,
    now: dt.datetime,
    stale_after: float,
) -> bool:
    error = storage.run(
        lambda tx: operations.fail_if_stale(tx, instance_id, cutoff, now, stale_after)
    )
    if error is not None:
        logger.warning("instance %r marked failed: %s", instance_id, error)
    return error is not None
