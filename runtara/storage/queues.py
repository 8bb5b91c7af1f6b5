"""Queues: the limits on claiming launches, changed by operators at run time.

A queue exists as soon as an instance names it; a row in ``queues`` gives it
limits (concurrency, per key, rate) or pauses it. The launchers read the rows at
every claim (:func:`runtara.storage.launches.claim`), so a change holds at once
for every server on the store.
"""

from __future__ import annotations

import datetime as dt

import attrs

from runtara import errors, records
from runtara.records import UNCHANGED
from runtara.storage import operations
from runtara.storage.transaction import Transaction


def set_queue(
    tx: Transaction,
    name: str,
    *,
    concurrency: int | None = UNCHANGED,
    per_key: int | None = UNCHANGED,
    rate: tuple[int, float] | None = UNCHANGED,
    paused: bool = UNCHANGED,
) -> records.Queue:
    """Change the named limits of queue ``name`` (None removes a limit; ``rate`` is
    (starts, seconds)), creating its row; returns the queue as it now is."""
    operations.require_id(name, "queue")
    for option, value in (("concurrency", concurrency), ("per-key", per_key)):
        if value is not UNCHANGED and value is not None and value < 1:
            raise errors.OperationRefused(f"--{option} must be 1 or more (or none)")
    changes: dict[str, object] = {}
    if concurrency is not UNCHANGED:
        changes["concurrency"] = concurrency
    if per_key is not UNCHANGED:
        changes["per_key"] = per_key
    if rate is not UNCHANGED:
        if rate is not None and (rate[0] < 1 or not rate[1] > 0):
            raise errors.OperationRefused("--rate must be N/DURATION with N of 1 or more")
        changes["rate_limit"], changes["rate_period"] = rate if rate is not None else (None, None)
    if paused is not UNCHANGED:
        changes["paused"] = paused
    queue = attrs.evolve(tx.get_queue(name, lock=True) or records.Queue(name), **changes)
    tx.put_queue(queue)
    return queue


def list_queues(tx: Transaction, now: dt.datetime) -> list[records.QueueView]:
    """Every queue with limits or with launches claimed or waiting, the default
    queue always, by name."""
    figures = tx.queue_figures(now)
    queues = {queue.name: queue for queue in tx.list_queues()}
    names = sorted({records.DEFAULT_QUEUE, *figures, *queues})
    return [
        records.QueueView(
            queues.get(name, records.Queue(name)), figures.get(name, records.QueueFigures())
        )
        for name in names
    ]
