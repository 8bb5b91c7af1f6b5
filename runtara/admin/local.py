"""Operator actions carried out directly on a storage driver: each operation's
work as :mod:`runtara.handlers.management` declares it, the one the server runs.

Signals follow upstream's rules (see :mod:`runtara.storage.operations`): the
instance must exist and not be finished; a new instance-wide signal replaces
the pending one; a custom signal needs a checkpoint id. The instance sees
them on its next Checkpoint or PollSignals.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from runtara import clock, errors
from runtara.admin.base import Admin
from runtara.storage import base


class LocalAdmin(Admin):
    def __init__(
        self,
        storage: base.StorageDriver,
        now: Callable[[], dt.datetime] = clock.utc_now,
        *,
        runs_dir: Path | None = None,
    ) -> None:
        self.storage = storage
        self.now = now
        self.runs_dir = runs_dir
        """Where launched instances' logs are (the server's --runs-dir)."""

    def describe(self) -> str:
        return f"storage {self.storage.describe()}"

    def health(self) -> str:
        self.storage.check()
        return f"storage {self.storage.describe()} is reachable and writable"

    def stats(self) -> dict[str, float]:
        raise errors.OperationRefused(
            "the counters are a running server's: name it with --server HOST:PORT "
            "(its --management-addr)"
        )

    def _perform(self, operator, arguments):
        return operator.run(self, **arguments)

    def close(self) -> None:
        self.storage.close()
