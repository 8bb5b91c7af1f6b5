"""The ``storage`` baseline: the server's work on a scenario, without the network.

K threads each run one instance's requests (:mod:`runtara.bench.scenarios`)
through the real handlers and driver, as the server's workers do (one
transaction per request, the reply built and encoded), as fast as they can.
The interface is :class:`~runtara.bench.clients.ClientGroup`'s, so one
driver runs both.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

from runtara import errors
from runtara.bench import scenarios
from runtara.bench.tally import LoadResult, Tally
from runtara.handlers import dispatch
from runtara.handlers.services import Services
from runtara.protocol import instance_pb2 as pb
from runtara.storage import base


class StorageLoad:
    """``threads`` instances running ``scenario`` on ``storage`` (migrated), one
    thread each; ``count`` closes the measured window after that many successes."""

    def __init__(
        self,
        storage: base.StorageDriver,
        scenario: str,
        *,
        threads: int,
        state_size: int,
        count: int | None = None,
    ) -> None:
        self._services = Services(storage)
        self._scenario = scenario
        self._state = os.urandom(state_size)
        self._tally = Tally(count=count)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._counted = threading.Event()
        self._prepared = threading.Semaphore(0)
        self._problems: list[str] = []
        run = f"bench-storage-{os.urandom(4).hex()}"
        self._threads = [
            threading.Thread(target=self._work, args=(f"{run}-{index}",), daemon=True)
            for index in range(threads)
        ]

    async def start(self) -> None:
        """Prepare every instance and start the load; raises OperationRefused
        when a preparation fails (nothing is left running)."""
        for thread in self._threads:
            thread.start()
        for _ in self._threads:
            await asyncio.to_thread(self._prepared.acquire)
        if self._problems:
            await self.abort()
            raise errors.OperationRefused(self._problems[0])

    @property
    def pids(self) -> list[int]:
        """No client processes: the work runs in this one."""
        return []

    async def totals(self) -> tuple[int, int]:
        with self._lock:
            return self._tally.completed, self._tally.failed

    async def record(self) -> None:
        with self._lock:
            self._tally.open(time.perf_counter())
            if self._tally.done:
                self._counted.set()

    async def counted(self) -> None:
        await asyncio.to_thread(self._counted.wait)

    async def finish(self) -> LoadResult:
        with self._lock:
            self._tally.close(time.perf_counter())
        await self.abort()
        return self._tally.result()

    async def abort(self) -> None:
        self._stopping.set()
        self._counted.set()  # nothing waits for a count that will not come
        for thread in self._threads:
            await asyncio.to_thread(thread.join)

    def _work(self, instance_id: str) -> None:
        registrations: dict[str, int] = {}
        try:
            for request in scenarios.preparation(self._scenario, instance_id, self._state):
                failure = self._call(request, registrations)
                if failure is not None:
                    self._problems.append(f"preparing instance {instance_id}: {failure}")
                    return
        finally:
            self._prepared.release()
        for request in scenarios.requests(self._scenario, instance_id, self._state):
            if self._stopping.is_set():
                return
            started = time.perf_counter()
            failure = self._call(request, registrations)
            now = time.perf_counter()
            with self._lock:
                self._tally.add(now - started, failure, now)
                if self._tally.done:
                    self._counted.set()

    def _call(self, request: pb.RpcRequest, registrations: dict[str, int]) -> str | None:
        """One request as a server worker runs it; why it failed, or None. Like the
        server for a client that names no registration, each instance's requests
        carry the registration its own registration got."""
        kind = request.WhichOneof("request")
        body = getattr(request, kind)
        outcome = dispatch.execute(
            dispatch.INSTANCE_OPERATIONS[kind],
            body,
            self._services,
            registrations.get(body.instance_id),
        )
        reply = outcome.message
        reply.SerializeToString()  # a worker encodes the reply too
        if kind == "register_instance" and reply.register_instance.HasField("registration"):
            registrations[body.instance_id] = reply.register_instance.registration
        return scenarios.failure(reply)
