"""The driver's tables: plain dictionaries of immutable records."""

from __future__ import annotations

import itertools

import attrs

from runtara import records


@attrs.define
class Tables:
    instances: dict[str, records.Instance] = attrs.Factory(dict)
    checkpoints: dict[tuple[str, str], tuple[int, records.Checkpoint]] = attrs.Factory(dict)
    """(instance, checkpoint id) -> (insertion number, checkpoint)."""
    events: list[records.Event] = attrs.Factory(list)
    signals: dict[str, records.Signal] = attrs.Factory(dict)
    custom_signals: dict[tuple[str, str], records.CustomSignal] = attrs.Factory(dict)
    counter: itertools.count = attrs.Factory(lambda: itertools.count(1))

    def copy(self) -> Tables:
        """A copy that a transaction may change freely (the records are immutable)."""
        return Tables(
            dict(self.instances),
            dict(self.checkpoints),
            list(self.events),
            dict(self.signals),
            dict(self.custom_signals),
            self.counter,
        )
