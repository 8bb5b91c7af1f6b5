"""Periodic maintenance on its own thread (never on the event loop or a worker)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from runtara import errors

logger = logging.getLogger(__name__)


class PeriodicTask:
    """Runs ``action`` at once, then every ``interval`` seconds (sooner when poked),
    until stopped; then ``on_stop`` once, on its thread."""

    def __init__(
        self,
        name: str,
        interval: float,
        action: Callable[[], object],
        on_stop: Callable[[], object] | None = None,
    ) -> None:
        self.name = name
        self._interval = interval
        self._action = action
        self._on_stop = on_stop
        self._stop = threading.Event()
        self._poked = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"runtara-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def poke(self) -> None:
        """Run the action again now rather than at the end of the interval (any thread)."""
        self._poked.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._poked.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._action()
            except errors.StorageError as error:
                logger.warning("%s: %s; trying again in %gs", self.name, error, self._interval)
            except Exception:
                logger.exception("%s failed; trying again in %gs", self.name, self._interval)
            self._poked.wait(self._interval)
            self._poked.clear()
        if self._on_stop is not None:
            self._on_stop()
