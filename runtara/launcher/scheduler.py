"""The server's scheduler: starts the instances of the schedules whose ticks are due.

Every server that runs a launcher runs one; they share the work through the
store (see :mod:`runtara.storage.schedules`), so each tick starts once however
many servers there are.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from runtara import clock, errors
from runtara.storage import base, schedules

logger = logging.getLogger(__name__)

INTERVAL = 0.5
"""Seconds between two looks for due ticks."""
BATCH = 50
"""Schedules fired in one transaction at most."""


class Scheduler:
    def __init__(
        self,
        storage: base.StorageDriver,
        *,
        now: Callable[[], dt.datetime] = clock.utc_now,
        batch: int = BATCH,
    ) -> None:
        self.storage = storage
        self._now = now
        self._batch = batch
        self.schedule_ticks_started = 0
        self.schedule_ticks_skipped = 0
        self.on_started: Callable[[], object] = lambda: None
        """Called after instances were started (the launcher's poke: it starts them
        now rather than at its next round)."""

    def tick(self) -> None:
        now = self._now()
        try:
            # A read first: most looks find nothing due, and need no write transaction.
            if not self.storage.run(
                lambda tx: tx.list_due_schedules(now=now, limit=1), write=False
            ):
                return
            fired = self.storage.run(lambda tx: schedules.fire_due(tx, now, limit=self._batch))
        except errors.StorageError as error:
            logger.warning("scheduler: firing the due schedules failed (%s); trying again", error)
            return
        self.schedule_ticks_started += len(fired.started)
        self.schedule_ticks_skipped += fired.skipped
        for instance_id in fired.started:
            logger.info(
                "schedule started instance %r",
                instance_id,
                extra={"instance_id": instance_id, "action": "scheduled"},
            )
        for name, reason in fired.paused.items():
            logger.warning("schedule %r paused: %s", name, reason)
        if fired.started:
            self.on_started()
