"""Counting finished operations: all of them for progress, the measured window apart.

A failed operation is never throughput: inside the window, successes count
as operations (with their latencies) and failures as errors.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs


@attrs.define
class LoadResult:
    """What one measured window saw."""

    operations: int
    """Operations that succeeded."""
    errors: int
    """Operations that failed (an error reply, a refusal, no reply)."""
    seconds: float
    latencies: list[float]
    """Seconds, one per successful operation, from sending the request to reading the reply."""
    first_error: str | None = None


def merge(results: Sequence[LoadResult], seconds: float) -> LoadResult:
    """Windows of several client processes as one of ``seconds``: operations and
    errors summed, latencies pooled."""
    return LoadResult(
        operations=sum(result.operations for result in results),
        errors=sum(result.errors for result in results),
        seconds=seconds,
        latencies=[latency for result in results for latency in result.latencies],
        first_error=next((r.first_error for r in results if r.first_error), None),
    )


@attrs.define
class Tally:
    """Operations of one load as they finish (not thread-safe: callers that add
    from several threads hold a lock).

    ``count``, when given, closes the window by itself after that many successes.
    """

    count: int | None = None
    completed: int = 0
    """Successes since the start, warm-up included."""
    failed: int = 0
    """Failures since the start, warm-up included."""
    started: float | None = None
    """``time.perf_counter()`` when the window opened."""
    ended: float | None = None
    window: LoadResult = attrs.Factory(lambda: LoadResult(0, 0, 0.0, []))

    @property
    def recording(self) -> bool:
        return self.started is not None and self.ended is None

    @property
    def done(self) -> bool:
        """The window closed."""
        return self.ended is not None

    def open(self, now: float) -> None:
        self.started = now
        if self.count == 0:
            self.ended = now

    def add(self, latency: float, failure: str | None, now: float) -> None:
        """One finished operation: ``failure`` is why it failed, or None."""
        if failure is None:
            self.completed += 1
        else:
            self.failed += 1
        if not self.recording:
            return
        window = self.window
        if failure is None:
            window.operations += 1
            window.latencies.append(latency)
            if self.count is not None and window.operations >= self.count:
                self.ended = now
        else:
            window.errors += 1
            window.first_error = window.first_error or failure

    def close(self, now: float) -> None:
        if self.started is not None and self.ended is None:
            self.ended = now

    def result(self) -> LoadResult:
        """The window (closed with :meth:`close` first)."""
        if self.started is None or self.ended is None:
            return attrs.evolve(self.window, seconds=0.0)
        return attrs.evolve(self.window, seconds=self.ended - self.started)
