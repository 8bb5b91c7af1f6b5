"""Many connections at once, and push-back when the workers are all busy."""

from __future__ import annotations

import contextlib
import sqlite3
import threading

from runtara.protocol import instance_pb2 as pb
from tests.support import LoopbackServer, sqlite_url, wait_for


@contextlib.contextmanager
def locked_server(tmp_path, **limits):
    """A SQLite server with instance ``a`` registered; yields (server, client,
    blocker), where ``blocker`` holds the database's write lock, so that every
    worker that writes waits on it until the test rolls it back."""
    server = LoopbackServer(sqlite_url(tmp_path), **limits)
    blocker = None
    try:
        client = server.client()
        assert client.register("a").success
        blocker = sqlite3.connect(tmp_path / "runtara.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        yield server, client, blocker
    finally:
        if blocker is not None:
            blocker.close()
        server.stop()


def test_32_connections_checkpointing_at_once_lose_no_acknowledged_checkpoint(server):
    connections = 32
    per_connection = 25
    clients = [server.client() for _ in range(connections)]
    for index, client in enumerate(clients):
        assert client.register(f"worker-{index}").success
    barrier = threading.Barrier(connections)
    acknowledged: list[list[tuple[str, bytes]]] = [[] for _ in range(connections)]
    failures: list[str] = []

    def work(index: int) -> None:
        client = clients[index]
        barrier.wait()
        for step in range(per_connection):
            state = f"{index}:{step}".encode() * 10
            reply = client.checkpoint(f"worker-{index}", f"step-{step}", state)
            if reply.HasField("error") or reply.checkpoint.found:
                failures.append(str(reply))
            else:
                acknowledged[index].append((f"step-{step}", state))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sum(len(acks) for acks in acknowledged) == connections * per_connection
    for index, acks in enumerate(acknowledged):
        instance_id = f"worker-{index}"
        stored = server.read(
            lambda tx, acks=acks, instance_id=instance_id: [
                tx.get_checkpoint(instance_id, checkpoint_id) for checkpoint_id, _ in acks
            ]
        )
        assert [row.state for row in stored] == [state for _, state in acks]
    if server.kind == "sqlite":  # group commit: 32 writers share commits
        stats = server.storage.stats()
        assert stats["transactions"] > stats["commits"]


def test_requests_beyond_workers_and_parking_get_an_overload_error(tmp_path):
    with locked_server(tmp_path, max_concurrent=2, max_pending=1) as (server, client, blocker):
        replies = {}

        def call(index):
            replies[index] = client.checkpoint("a", f"cp-{index}", b"x")

        threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        wait_for(lambda: server.server.stats()["parked"] == 1)
        overflow = client.checkpoint("a", "cp-overflow", b"x")
        assert overflow.error.code == "OVERLOADED"
        assert "retry later" in overflow.error.message
        blocker.execute("ROLLBACK")
        for thread in threads:
            thread.join()
        assert all(not reply.HasField("error") for reply in replies.values())
        assert server.read(lambda tx: tx.get_checkpoint("a", "cp-overflow")) is None
        assert server.server.stats()["rejected"] == 1


def test_no_reply_requests_refused_under_overload_are_reset(tmp_path):
    with locked_server(tmp_path, max_concurrent=1, max_pending=0) as (server, client, blocker):
        busy = threading.Thread(target=client.checkpoint, args=("a", "cp", b"x"))
        busy.start()
        wait_for(lambda: server.server.stats()["running"] == 1)

        async def ack():
            stream = client.connection.open_stream()
            frame = pb.RpcRequest(
                signal_ack=pb.SignalAck(instance_id="a", acknowledged=True)
            ).SerializeToString()
            stream.send(len(frame).to_bytes(4, "big") + b"\x00\x01" + frame, end=True)
            try:
                await stream.read_to_end()
            except Exception as error:
                return error
            return None

        error = client.loop.run(ack(), 10)
        assert error is not None and "reset" in str(error)
        blocker.execute("ROLLBACK")
        busy.join()


def test_a_request_larger_than_the_connection_buffer_is_refused(tmp_path):
    with LoopbackServer(sqlite_url(tmp_path), max_buffered_per_connection=100_000) as server:
        client = server.client()
        assert client.register("a").success
        big = pb.RpcRequest(
            checkpoint=pb.CheckpointRequest(
                instance_id="a", checkpoint_id="big", state=b"x" * 200_000
            )
        ).SerializeToString()
        assert client.raw(len(big).to_bytes(4, "big") + b"\x00\x01" + big) == b""
        assert server.read(lambda tx: tx.get_checkpoint("a", "big")) is None
        # released once the client's reset (answering our STOP_SENDING) arrives
        wait_for(lambda: server.server.stats()["buffered_bytes"] == 0)
        assert not client.checkpoint("a", "small", b"x" * 50_000).HasField("error")


def test_admitted_request_bytes_are_capped(tmp_path):
    with locked_server(tmp_path, max_inflight_bytes=100_000) as (server, client, blocker):
        first = {}
        thread = threading.Thread(
            target=lambda: first.update(reply=client.checkpoint("a", "one", b"x" * 60_000))
        )
        thread.start()
        wait_for(lambda: server.server.stats()["admitted_bytes"] > 60_000)
        second = client.checkpoint("a", "two", b"y" * 60_000)
        assert second.error.code == "OVERLOADED"
        blocker.execute("ROLLBACK")
        thread.join()
        assert not first["reply"].HasField("error")
        assert server.server.stats()["admitted_bytes"] == 0
