"""Admission control in front of the worker pool; lives on the event-loop thread.

At most ``workers`` requests run at once. Further requests are parked in a FIFO
up to ``max_pending``, and the payload bytes of running and parked requests
together stay under ``max_bytes``; past either, :meth:`Dispatcher.submit`
refuses them and the caller answers with an overload error.

Results come back to the loop in batches: a finishing worker queues its result
and wakes the loop only if no wake-up is pending, so under load one
``call_soon_threadsafe`` (one write to the loop's self-pipe) carries many
results. The loop never waits for a worker.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

Work = Callable[[], Any]
Done = Callable[[Any], None]
"""Called on the loop with the work's result, or with the exception it raised."""


class Dispatcher:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        executor: concurrent.futures.Executor,
        *,
        workers: int,
        max_pending: int,
        max_bytes: int,
    ) -> None:
        self._loop = loop
        self._executor = executor
        self._workers = workers
        self._max_pending = max_pending
        self._max_bytes = max_bytes
        self._running = 0
        self._bytes = 0
        self._parked: collections.deque[tuple[Work, Done, int]] = collections.deque()
        self._finished_queue: collections.deque[tuple[Any, Done, int]] = collections.deque()
        self._wake_pending = False
        self._idle: asyncio.Event | None = None
        self.completed = 0
        self.rejected = 0

    @property
    def running(self) -> int:
        return self._running

    @property
    def parked(self) -> int:
        return len(self._parked)

    @property
    def admitted_bytes(self) -> int:
        return self._bytes

    def submit(self, work: Work, done: Done, *, size: int = 0, must_run: bool = False) -> bool:
        """Run ``work`` on a worker, then ``done(result)`` on the loop.

        ``size`` is the request's payload size. Returns False, without running
        anything, when the pool and the parking queue are full or the bytes
        limit would be crossed; ``must_run`` work (the second half of an
        admitted request) is taken regardless.
        """
        if not must_run and self._bytes and self._bytes + size > self._max_bytes:
            self.rejected += 1
            return False
        if self._running < self._workers:
            self._start(work, done, size)
            return True
        if must_run or len(self._parked) < self._max_pending:
            self._bytes += size
            self._parked.append((work, done, size))
            return True
        self.rejected += 1
        return False

    async def wait_idle(self) -> None:
        """Return once no request is running or parked."""
        while self._running or self._parked:
            self._idle = asyncio.Event()
            await self._idle.wait()

    def _start(self, work: Work, done: Done, size: int, parked: bool = False) -> None:
        self._running += 1
        if not parked:
            self._bytes += size
        self._executor.submit(self._run, work, done, size)

    def _run(self, work: Work, done: Done, size: int) -> None:
        # On a worker thread.
        try:
            result = work()
        except Exception as error:
            logger.exception("a request failed outside its handler")
            result = error
        self._finished_queue.append((result, done, size))
        if not self._wake_pending:
            self._wake_pending = True
            try:
                self._loop.call_soon_threadsafe(self._finish_batch)
            except RuntimeError:  # the loop is gone: the server stopped past its grace period
                pass

    def _finish_batch(self) -> None:
        # Reset before draining: a result queued after this point schedules a new batch.
        self._wake_pending = False
        finished = self._finished_queue
        while finished:
            result, done, size = finished.popleft()
            self._running -= 1
            self._bytes -= size
            self.completed += 1
            if self._parked:
                self._start(*self._parked.popleft(), parked=True)
            done(result)
        if not self._running and not self._parked and self._idle is not None:
            self._idle.set()
