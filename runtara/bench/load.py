"""The client side of the benchmark: K instances on their own QUIC connections.

Each connection runs one scenario loop, one request at a time, for a warm-up
and then a measured window (or a count of operations). An operation is one
RPC; its latency is from writing the request to reading the whole reply.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable

import attrs

from runtara import errors
from runtara.client.connection import Connection
from runtara.protocol import instance_pb2 as pb

SCENARIOS = ("checkpoint", "resume", "lifecycle", "large")
RESUME_IDS = 50


@attrs.define
class LoadResult:
    operations: int
    errors: int
    seconds: float
    latencies: list[float]
    """Seconds, one per measured operation."""
    first_error: str | None = None


@attrs.define
class _Tally:
    recording: bool = False
    stop: bool = False
    operations: int = 0
    errors: int = 0
    latencies: list = attrs.Factory(list)
    first_error: str | None = None


def _requests(scenario: str, instance_id: str, state: bytes) -> AsyncIterator[pb.RpcRequest]:
    """The endless request sequence of one instance for a scenario."""

    async def checkpoints(checkpoint_id):
        sequence = 0
        while True:
            sequence += 1
            yield pb.RpcRequest(
                checkpoint=pb.CheckpointRequest(
                    instance_id=instance_id, checkpoint_id=checkpoint_id(sequence), state=state
                )
            )

    async def lifecycles():
        generation = 0
        while True:
            generation += 1
            life = f"{instance_id}-{generation}"
            yield pb.RpcRequest(
                register_instance=pb.RegisterInstanceRequest(instance_id=life, tenant_id="bench")
            )
            for step in range(3):
                yield pb.RpcRequest(
                    checkpoint=pb.CheckpointRequest(
                        instance_id=life, checkpoint_id=f"step-{step}", state=state
                    )
                )
            yield pb.RpcRequest(poll_signals=pb.PollSignalsRequest(instance_id=life))
            yield pb.RpcRequest(
                instance_event=pb.InstanceEvent(instance_id=life, event_type=pb.EVENT_HEARTBEAT)
            )
            yield pb.RpcRequest(
                instance_event=pb.InstanceEvent(
                    instance_id=life, event_type=pb.EVENT_COMPLETED, payload=b"{}"
                )
            )

    if scenario == "resume":
        return checkpoints(lambda sequence: f"resume-{sequence % RESUME_IDS}")
    if scenario in ("checkpoint", "large"):
        return checkpoints(lambda sequence: f"cp-{sequence}")
    return lifecycles()


async def _prepare(connection: Connection, scenario: str, instance_id: str, state: bytes) -> None:
    await connection.call(
        pb.RpcRequest(
            register_instance=pb.RegisterInstanceRequest(instance_id=instance_id, tenant_id="bench")
        ),
        pb.RpcResponse,
        timeout=30,
    )
    if scenario == "resume":
        for index in range(RESUME_IDS):
            await connection.call(
                pb.RpcRequest(
                    checkpoint=pb.CheckpointRequest(
                        instance_id=instance_id, checkpoint_id=f"resume-{index}", state=state
                    )
                ),
                pb.RpcResponse,
                timeout=30,
            )


async def _worker(connection: Connection, requests, tally: _Tally, count: int | None) -> None:
    async for request in requests:
        if tally.stop:
            return
        started = time.perf_counter()
        try:
            reply = await connection.call(request, pb.RpcResponse, timeout=30)
            failure = (
                f"{reply.error.code}: {reply.error.message}" if reply.HasField("error") else None
            )
        except errors.ClientError as error:
            failure = f"{type(error).__name__}: {error}"
        if not tally.recording:
            continue
        tally.operations += 1
        tally.latencies.append(time.perf_counter() - started)
        if failure is not None:
            tally.errors += 1
            tally.first_error = tally.first_error or failure
        if count is not None and tally.operations >= count:
            tally.stop = True


async def run_load(
    address: tuple[str, int],
    scenario: str,
    *,
    connections: int,
    state_size: int,
    warmup: float,
    duration: float | None,
    count: int | None,
    on_window: Callable[[str], None] = lambda phase: None,
    progress: bool = False,
) -> LoadResult:
    """Open ``connections`` connections, run the scenario, return what was measured.

    ``on_window("start")`` and ``on_window("end")`` are called around the
    measured window (the caller samples server CPU there).
    """
    run = uuid.uuid4().hex[:8]
    state = os.urandom(state_size)
    opened = await asyncio.gather(
        *(Connection.open(*address, timeout=30) for _ in range(connections))
    )
    tally = _Tally()
    try:
        ids = [f"bench-{run}-{index}" for index in range(connections)]
        await asyncio.gather(
            *(_prepare(c, scenario, i, state) for c, i in zip(opened, ids, strict=True))
        )
        workers = [
            asyncio.ensure_future(_worker(c, _requests(scenario, i, state), tally, count))
            for c, i in zip(opened, ids, strict=True)
        ]
        await asyncio.sleep(warmup)
        on_window("start")
        tally.recording = True
        started = time.perf_counter()
        deadline = None if duration is None else started + duration
        while not tally.stop and (deadline is None or time.perf_counter() < deadline):
            await asyncio.sleep(0.25)
            if progress:
                elapsed = time.perf_counter() - started
                sys.stderr.write(
                    f"\r  {scenario}: {elapsed:5.1f}s  {tally.operations} ops  "
                    f"{tally.operations / elapsed:,.0f} ops/s  errors {tally.errors}   "
                )
                sys.stderr.flush()
        seconds = time.perf_counter() - started
        tally.recording = False
        on_window("end")
        tally.stop = True
        await asyncio.wait(workers, timeout=35)
        if progress:
            sys.stderr.write("\n")
        return LoadResult(
            tally.operations, tally.errors, seconds, tally.latencies, tally.first_error
        )
    finally:
        await asyncio.gather(*(c.close(wait=0.2) for c in opened), return_exceptions=True)


async def open_idle(address: tuple[str, int], connections: int) -> list[Connection]:
    """Open connections that then stay idle (for the memory measurement)."""
    opened = []
    for start in range(0, connections, 50):  # in waves, not one handshake storm
        batch = min(50, connections - start)
        opened += await asyncio.gather(
            *(Connection.open(*address, timeout=60) for _ in range(batch))
        )
    return opened
