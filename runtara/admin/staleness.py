"""Marking instances failed that stopped talking (``--stale-after``).

Upstream's environment service does this; runtara-core alone must
too, so that operators and wake schedulers see the truth. An instance is stale
when it is running and no request of it arrived for ``stale_after``.
"""

from __future__ import annotations

import datetime as dt
import logging

from runtara import records
from runtara.storage import base

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
    def work(tx: base.Transaction) -> bool:
        instance = tx.get_instance(instance_id)  # locked: re-check under the lock
        if instance is None or instance.status is not records.InstanceStatus.RUNNING:
            return False
        last = instance.last_activity_at or instance.started_at or instance.created_at
        if last >= cutoff:
            return False
        error = (
            f"Instance stale: no activity since {last.isoformat(timespec='seconds')} "
            f"(timeout: {stale_after:g}s)"
        )
        tx.update_instance(
            instance_id,
            records.InstanceUpdate(
                status=records.InstanceStatus.FAILED, finished_at=now, error=error, output=None
            ),
        )
        logger.warning("instance %r marked failed: %s", instance_id, error)
        return True

    return storage.run(work)
