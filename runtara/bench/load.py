"""One client process's share of the load: its instances on their own QUIC connections.

Each connection sends its instance's requests (:mod:`runtara.bench.scenarios`)
one at a time, from :meth:`ClientLoad.start` (the warm-up) until
:meth:`ClientLoad.finish`; only what finishes between :meth:`ClientLoad.record`
and the end counts. An operation is one RPC; its latency is from writing the
request to reading the whole reply.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator, Sequence

from runtara import errors
from runtara.bench import scenarios
from runtara.bench.tally import LoadResult, Tally
from runtara.client.connection import Connection
from runtara.protocol import codes
from runtara.protocol import instance_pb2 as pb

CONNECT_TIMEOUT = 30.0
IDLE_CONNECT_TIMEOUT = 60.0
"""Handshakes of a crowd of idle connections may wait longer."""
REQUEST_TIMEOUT = 30.0
FIRST_PAUSE = 0.01
LONGEST_PAUSE = 0.5
"""Back-off of a preparation request the server was too busy for."""
OPEN_WAVE = 50
"""Connections opened at once (a larger handshake storm only delays them all)."""


class ClientLoad:
    """The instances ``instance_ids`` running ``scenario`` against ``address``, one
    connection each; ``count`` closes the measured window after that many
    successes (the load goes on until :meth:`finish`)."""

    def __init__(
        self,
        address: tuple[str, int],
        scenario: str,
        instance_ids: Sequence[str],
        *,
        state_size: int,
        count: int | None = None,
    ) -> None:
        self.address = address
        self.scenario = scenario
        self.instance_ids = list(instance_ids)
        self.state_size = state_size
        self.tally = Tally(count=count)
        self.done = asyncio.Event()
        """Set when the measured window closed by itself (``count`` reached)."""
        self._connections: list[Connection] = []
        self._workers: list[asyncio.Task] = []
        self._stopping = False

    async def start(self) -> None:
        """Connect, prepare every instance (registration; the ids ``resume`` saves
        again) and start the load. Raises ClientError when a connection or a
        request fails, OperationRefused when the server refuses the preparation."""
        state = os.urandom(self.state_size)
        self._connections = await _connect(self.address, len(self.instance_ids))
        await asyncio.gather(
            *(
                _prepare(connection, self.scenario, instance_id, state)
                for connection, instance_id in zip(
                    self._connections, self.instance_ids, strict=True
                )
            )
        )
        self._workers = [
            asyncio.ensure_future(
                self._work(connection, scenarios.requests(self.scenario, instance_id, state))
            )
            for connection, instance_id in zip(self._connections, self.instance_ids, strict=True)
        ]

    def record(self) -> None:
        """Open the measured window."""
        self.tally.open(time.perf_counter())
        if self.tally.done:
            self.done.set()

    async def finish(self) -> LoadResult:
        """Close the window, let the requests in flight end, disconnect; what was measured."""
        self.tally.close(time.perf_counter())
        self._stopping = True
        if self._workers:
            await asyncio.wait(self._workers, timeout=REQUEST_TIMEOUT + 5)
        await self.close()
        return self.tally.result()

    async def close(self) -> None:
        """Stop at once and disconnect."""
        self._stopping = True
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        await asyncio.gather(
            *(connection.close(wait=0.2) for connection in self._connections),
            return_exceptions=True,
        )

    async def _work(self, connection: Connection, requests: Iterator[pb.RpcRequest]) -> None:
        tally = self.tally
        for request in requests:
            if self._stopping:
                return
            started = time.perf_counter()
            try:
                reply = await connection.call(request, pb.RpcResponse, timeout=REQUEST_TIMEOUT)
                failure = scenarios.failure(reply)
            except errors.ClientError as error:
                failure = f"{type(error).__name__}: {error}"
            now = time.perf_counter()
            tally.add(now - started, failure, now)
            if tally.done:
                self.done.set()
            if connection.closed:
                return  # every later request would fail at once


async def _prepare(connection: Connection, scenario: str, instance_id: str, state: bytes) -> None:
    """Send the instance's preparation; an overloaded server is asked again after
    a pause, as instances do, within the request timeout."""
    for request in scenarios.preparation(scenario, instance_id, state):
        deadline = time.monotonic() + REQUEST_TIMEOUT
        pause = FIRST_PAUSE
        while True:
            reply = await connection.call(request, pb.RpcResponse, timeout=REQUEST_TIMEOUT)
            failure = scenarios.failure(reply)
            if failure is None:
                break
            if reply.error.code != codes.OVERLOADED or time.monotonic() + pause > deadline:
                raise errors.OperationRefused(f"preparing instance {instance_id}: {failure}")
            await asyncio.sleep(pause)
            pause = min(2 * pause, LONGEST_PAUSE)


async def open_idle(address: tuple[str, int], connections: int) -> list[Connection]:
    """Open connections that then stay idle (for the memory measurement)."""
    return await _connect(address, connections, timeout=IDLE_CONNECT_TIMEOUT)


async def _connect(
    address: tuple[str, int], count: int, *, timeout: float = CONNECT_TIMEOUT
) -> list[Connection]:
    """``count`` connections, opened in waves; none is left open when one fails
    (the first failure is raised)."""
    opened: list[Connection] = []
    for start in range(0, count, OPEN_WAVE):
        outcomes = await asyncio.gather(
            *(
                Connection.open(*address, timeout=timeout)
                for _ in range(min(OPEN_WAVE, count - start))
            ),
            return_exceptions=True,
        )
        opened += [outcome for outcome in outcomes if isinstance(outcome, Connection)]
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if failures:
            await asyncio.gather(*(c.close(wait=0.2) for c in opened), return_exceptions=True)
            raise failures[0]
    return opened
