"""Deleting finished instances (``runtara-core prune`` and ``--retention``).

Deletes completed, failed and cancelled instances that finished before a cutoff,
with their checkpoints, events, signals and launches, in bounded batches: each
batch is one transaction (one statement for the SQL drivers) that checks every
instance again on the row it deletes, so a running or suspended instance is
never touched and an interruption at any point leaves every instance either
whole or gone.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

import attrs

from runtara.storage import base

logger = logging.getLogger(__name__)


@attrs.frozen
class PruneResult:
    deleted: list[str]
    """Instance ids deleted (or, in a dry run, that would be)."""
    batches: int


def prune(
    storage: base.StorageDriver,
    cutoff: dt.datetime,
    *,
    batch_size: int = 500,
    dry_run: bool = False,
    on_batch: Callable[[list[str]], None] | None = None,
) -> PruneResult:
    """Delete the instances finished before ``cutoff``; ``on_batch(ids)`` follows each batch."""
    if dry_run:
        everything = storage.run(lambda tx: tx.list_finished_before(cutoff, 2**31 - 1), write=False)
        return PruneResult(everything, 0)

    deleted: list[str] = []
    batches = 0
    while True:
        gone = storage.run(lambda tx: tx.delete_finished_before(cutoff, batch_size))
        if not gone:
            return PruneResult(deleted, batches)
        batches += 1
        deleted.extend(gone)
        if on_batch is not None:
            on_batch(gone)
