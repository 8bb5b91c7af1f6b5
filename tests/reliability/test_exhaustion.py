"""Resource exhaustion: many connections, handshake floods, streams that never
finish, half frames that stall, requests far beyond the pool. Memory stays
within the documented bound, the server keeps answering, nothing acknowledged
is lost."""

from __future__ import annotations

import asyncio
import sqlite3
import struct
import threading
import time

import pytest

from runtara.bench import load, servers
from runtara.client.connection import Connection
from runtara.protocol.codes import CONNECTION_EVICTED
from runtara.protocol.streams import STREAM_OVERHEAD
from tests.support import LoopbackServer, RpcClient, ServerProcess, sqlite_url, wait_for

KiB, MiB = 1024, 1024 * 1024


def round_trip(client: RpcClient, instance_id: str, step: int) -> None:
    """A well-behaved instance's request, checked byte for byte."""
    state = f"{instance_id}:{step}".encode() * 20
    assert not client.checkpoint(instance_id, f"cp-{step}", state).HasField("error")
    assert client.get_checkpoint(instance_id, f"cp-{step}").get_checkpoint.state == state


@pytest.mark.timeout(240)
def test_1000_idle_connections_then_a_handshake_flood(tmp_path):
    server = ServerProcess(cwd=tmp_path)
    good = RpcClient(server.address, timeout=60)
    try:
        assert good.register("steady").success
        base = servers.memory(server.process.pid, "VmRSS")

        async def crowd():
            idle = await load.open_idle(server.address, 1000)
            after_idle = servers.memory(server.process.pid, "VmRSS")
            flood = await asyncio.gather(
                *(Connection.open(*server.address, timeout=60) for _ in range(300)),
                return_exceptions=True,
            )
            peak = servers.memory(server.process.pid, "VmHWM")
            for connection in [*idle, *(c for c in flood if isinstance(c, Connection))]:
                await connection.close(wait=0)
            return after_idle, flood, peak

        results = {}
        thread = threading.Thread(target=lambda: results.update(out=asyncio.run(crowd())))
        thread.start()
        step = 0
        while thread.is_alive():  # the server keeps answering during the storm
            round_trip(good, "steady", step)
            step += 1
        thread.join()
        after_idle, flood, peak = results["out"]
        assert step > 0
        assert all(isinstance(c, Connection) for c in flood)
        # documented bound: 60 KiB per idle connection, 150 KiB per handshake in progress
        assert (after_idle - base) / 1000 < 64 * KiB
        assert peak < base + 1000 * 64 * KiB + 300 * 150 * KiB + 64 * MiB
        round_trip(good, "steady", step)
    finally:
        good.close()
        server.signal()
        assert server.wait() == 0


def test_streams_that_never_finish_are_charged_to_the_budgets(tmp_path):
    with LoopbackServer(sqlite_url(tmp_path), max_total_buffer=200 * STREAM_OVERHEAD) as server:
        good = server.client()
        assert good.register("fine").success
        hostile = server.client()

        async def open_many(count):
            for _ in range(count):
                if hostile.connection.closed:
                    return  # evicted already, while still opening streams
                stream = hostile.connection.open_stream()
                stream.send(struct.pack(">IH", 500, 1) + b"x" * 10)  # half a frame, no FIN
                await asyncio.sleep(0)

        hostile.loop.run(open_many(400), 30)
        # past the server-wide budget, the connection holding most of it is closed
        wait_for(lambda: hostile.connection.closed)
        assert hostile.connection._protocol.terminated.error_code == CONNECTION_EVICTED
        assert server.server.stats()["buffered_bytes"] <= 200 * STREAM_OVERHEAD
        round_trip(good, "fine", 1)
        wait_for(lambda: server.server.stats()["buffered_bytes"] == 0)
        round_trip(good, "fine", 2)


def test_half_frames_that_stall_are_dropped_after_the_request_timeout(tmp_path):
    with LoopbackServer(sqlite_url(tmp_path), request_timeout=1.0) as server:
        staller = server.client()
        good = server.client()
        assert good.register("fine").success

        async def stall():
            stream = staller.connection.open_stream()
            stream.send(struct.pack(">IH", 100_000, 1) + b"y" * 5_000)
            started = time.monotonic()
            data = await stream.read_to_end()  # the server gives up and FINs
            return data, time.monotonic() - started, stream.stop_code

        data, waited, stop_code = staller.loop.run(stall(), 30)
        assert data == b"" and stop_code is not None and waited >= 0.9
        wait_for(lambda: server.server.stats()["buffered_bytes"] <= STREAM_OVERHEAD)
        round_trip(good, "fine", 1)


def test_requests_far_beyond_the_worker_pool_lose_nothing_acknowledged(tmp_path):
    server = LoopbackServer(sqlite_url(tmp_path), max_concurrent=2, max_pending=8)
    blocker = sqlite3.connect(tmp_path / "runtara.db", isolation_level=None)
    try:
        clients = [server.client() for _ in range(24)]
        for index, client in enumerate(clients):
            assert client.register(f"flood-{index}").success
        acknowledged, overloaded = [], []
        lock = threading.Lock()

        def hammer(index):
            client = clients[index]
            for step in range(10):
                state = f"{index}/{step}".encode()
                reply = client.checkpoint(f"flood-{index}", f"cp-{step}", state)
                with lock:
                    if reply.HasField("error"):
                        assert reply.error.code == "OVERLOADED"
                        overloaded.append((index, step))
                    else:
                        acknowledged.append((index, step, state))

        blocker.execute("BEGIN IMMEDIATE")  # a slow disk: every worker waits
        threads = [threading.Thread(target=hammer, args=(i,)) for i in range(len(clients))]
        for thread in threads:
            thread.start()
        wait_for(lambda: server.server.stats()["rejected"] > 0)
        stats = server.server.stats()
        assert stats["running"] <= 2 and stats["parked"] <= 8
        blocker.execute("ROLLBACK")
        for thread in threads:
            thread.join()
        assert overloaded and acknowledged
        for index, step, state in acknowledged:
            stored = server.read(
                lambda tx, i=index, s=step: tx.get_checkpoint(f"flood-{i}", f"cp-{s}")
            )
            assert stored is not None and stored.state == state
        for index, step in overloaded:  # refused means not stored
            assert (
                server.read(lambda tx, i=index, s=step: tx.get_checkpoint(f"flood-{i}", f"cp-{s}"))
                is None
            )
        assert server.server.stats()["admitted_bytes"] == 0
    finally:
        blocker.close()
        server.stop()
