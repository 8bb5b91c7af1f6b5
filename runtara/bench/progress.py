"""Live progress of a benchmark: a line on standard error at each step and each second.

Silent unless enabled (the command enables it when standard error is a
terminal); nothing here touches what the benchmark prints on standard output.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from runtara.bench import cpu


class Progress:
    def __init__(self, enabled: bool, stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self._stream = stream or sys.stderr
        self._label = ""
        self._began = 0.0
        self._last = (0.0, 0)

    def say(self, text: str) -> None:
        """A line on its own."""
        if self.enabled:
            self._stream.write(text + "\n")
            self._stream.flush()

    def begin(self, label: str, completed: int = 0) -> None:
        """A phase starts (``label``, such as ``echo: warm-up``), ``completed``
        operations so far; its ticks count from here."""
        self._label = label
        self._began = time.monotonic()
        self._last = (self._began, completed)

    def tick(self, completed: int, failed: int, use: cpu.Use | None = None) -> None:
        """One more second of the phase: successes per second since the last
        tick, failures so far and, given ``use``, that second's CPU."""
        now = time.monotonic()
        then, before = self._last
        self._last = (now, completed)
        rate = (completed - before) / (now - then) if now > then else 0.0
        line = f"  {self._label} {now - self._began:5.1f} s {rate:9,.0f} ops/s {failed:6,} failed"
        if use is not None:
            line += "  " + describe(use)
        self.say(line)


def describe(use: cpu.Use) -> str:
    """The CPU split of a stretch of time in a few words."""
    seconds = max(use.seconds, 1e-9)
    parts = []
    if use.server is not None:
        parts.append(f"server {use.server / seconds * 100:.0f} % of a core")
    share = use.client_core_share
    if share is not None:
        parts.append(f"client {share * 100:.0f} % of a core per process")
    parts.append(f"machine idle {use.idle_share * 100:.0f} %")
    return ", ".join(parts)
