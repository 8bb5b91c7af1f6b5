"""Requests of one loop pass served together: one hand-off, one transaction, one COMMIT.

Over real QUIC on loopback and a real SQLite file. To put chosen requests in
one batch, a test holds SQLite's write lock from outside: the batch in flight
waits for it, and the requests that arrive meanwhile wait on the loop, then
leave together as the next batch.
"""

from __future__ import annotations

import ast
import concurrent.futures
import datetime as dt
import sqlite3
import threading
from pathlib import Path

import pytest

import runtara.server.core
from runtara.drivers.sqlite.driver import SqliteDriver
from runtara.protocol import instance_pb2 as pb
from tests.support import LoopbackServer, sqlite_url, wait_for

POISON = """
CREATE TABLE poison_parent (id INTEGER PRIMARY KEY);
CREATE TABLE poison (parent INTEGER REFERENCES poison_parent (id) DEFERRABLE INITIALLY DEFERRED);
CREATE TRIGGER poison_checkpoint AFTER INSERT ON checkpoints
WHEN NEW.instance_id = 'poisoned'
BEGIN
    INSERT INTO poison VALUES (42);
END;
"""
"""A checkpoint of 'poisoned' breaks a deferred foreign key: its own statement
succeeds and the COMMIT of its transaction fails."""


@pytest.fixture
def sqlite_server(tmp_path):
    server = LoopbackServer(sqlite_url(tmp_path))
    yield server
    server.stop()


def stored(server, instance_id: str, checkpoint_id: str):
    return server.read(lambda tx: tx.get_checkpoint(instance_id, checkpoint_id))


class HeldBatch:
    """Holds SQLite's write lock so that requests sent meanwhile form one batch."""

    def __init__(self, server, tmp_path: Path) -> None:
        self.server = server
        self.pool = concurrent.futures.ThreadPoolExecutor(8)
        first = server.client()
        assert first.register("first").success
        self.blocker = sqlite3.connect(tmp_path / "runtara.db", isolation_level=None)
        self.blocker.execute("BEGIN IMMEDIATE")
        # Taken into a batch that now waits for the lock: the next requests queue up.
        self.first = self.pool.submit(first.checkpoint, "first", "cp", b"first")
        wait_for(lambda: server.server.stats()["running"] == 1)

    def send(self, calls) -> list[concurrent.futures.Future]:
        """Send each call from its own connection; return once all are waiting."""
        running = self.server.server.stats()["running"]
        futures = [self.pool.submit(call) for call in calls]
        wait_for(lambda: self.server.server.stats()["running"] == running + len(calls))
        return futures

    def release(self) -> None:
        batches = self.server.server.stats()["batches"]
        self.blocker.execute("COMMIT")
        self.blocker.close()
        assert not self.first.result(10).HasField("error")
        wait_for(lambda: self.server.server.stats()["running"] == 0)
        # Served: the first request's batch, then the held requests as one batch.
        assert self.server.server.stats()["batches"] == batches + 2
        self.pool.shutdown()


def checkpoints_in_one_batch(server, tmp_path, clients, saves) -> list[pb.RpcResponse]:
    """Each client saves checkpoint ``cp`` of its (instance id, state) of ``saves``, all
    held back until they are served as one batch; their replies."""
    held = HeldBatch(server, tmp_path)
    futures = held.send(
        [
            lambda client=client, instance_id=instance_id, state=state: client.checkpoint(
                instance_id, "cp", state
            )
            for client, (instance_id, state) in zip(clients, saves, strict=True)
        ]
    )
    held.release()
    return [future.result(10) for future in futures]


def test_many_clients_at_once_get_their_own_replies_and_share_commits(sqlite_server):
    connections, rounds = 32, 10
    clients = [sqlite_server.client() for _ in range(connections)]
    for index, client in enumerate(clients):
        assert client.register(f"i-{index}").success
    before = sqlite_server.server.stats()
    barrier = threading.Barrier(connections)
    replies: dict[tuple[int, int], pb.RpcResponse] = {}

    def work(index: int) -> None:
        barrier.wait()
        for step in range(rounds):
            state = f"{index}/{step}".encode()
            replies[index, step] = clients[index].checkpoint(f"i-{index}", f"cp-{step}", state)
            got = clients[index].get_checkpoint(f"i-{index}", f"cp-{step}")
            replies[index, -step - 1] = got

    threads = [threading.Thread(target=work, args=(index,)) for index in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index in range(connections):
        for step in range(rounds):
            reply = replies[index, step]
            assert not reply.HasField("error") and not reply.checkpoint.found, reply
            read = replies[index, -step - 1].get_checkpoint
            assert read.found and read.state == f"{index}/{step}".encode()
            assert stored(sqlite_server, f"i-{index}", f"cp-{step}").state == read.state
    after = sqlite_server.server.stats()
    requests = after["completed"] - before["completed"]
    assert requests == 2 * connections * rounds
    assert after["batches"] - before["batches"] < requests  # some shared a batch
    storage = sqlite_server.storage.stats()
    assert storage["transactions"] > storage["commits"]


def test_a_refused_request_in_a_batch_leaves_the_others_committed(sqlite_server, tmp_path):
    clients = [sqlite_server.client() for _ in range(3)]
    assert clients[0].register("a").success
    assert clients[2].register("c").success
    first, refused, last = checkpoints_in_one_batch(
        sqlite_server, tmp_path, clients, [("a", b"a"), ("never-registered", b"x"), ("c", b"c")]
    )
    assert not first.HasField("error") and not last.HasField("error")
    assert refused.error.code == "CHECKPOINT_ERROR"
    assert stored(sqlite_server, "a", "cp").state == b"a"
    assert stored(sqlite_server, "c", "cp").state == b"c"
    assert stored(sqlite_server, "never-registered", "cp") is None


def test_a_failed_commit_answers_every_request_of_the_batch_and_keeps_none(sqlite_server, tmp_path):
    sqlite_server.execute_sql(POISON)
    clients = [sqlite_server.client() for _ in range(3)]
    for client, instance_id in zip(clients, ["a", "poisoned", "c"], strict=True):
        assert client.register(instance_id).success
    replies = checkpoints_in_one_batch(
        sqlite_server, tmp_path, clients, [("a", b"a"), ("poisoned", b"p"), ("c", b"c")]
    )
    for reply in replies:
        assert reply.error.code == "CHECKPOINT_ERROR"
        assert "FOREIGN KEY constraint failed" in reply.error.message
    for instance_id in ("a", "poisoned", "c"):
        assert stored(sqlite_server, instance_id, "cp") is None
    # The store serves again: the next batch commits.
    reply = clients[0].checkpoint("a", "cp", b"again")
    assert not reply.HasField("error")
    assert stored(sqlite_server, "a", "cp").state == b"again"
    assert stored(sqlite_server, "first", "cp").state == b"first"


def test_the_core_imports_nothing_of_the_handlers():
    tree = ast.parse(Path(runtara.server.core.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
            imported.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert not [name for name in imported if name.startswith("runtara.handlers")]


def test_a_sqlite_batch_commits_once_and_undoes_only_the_write_that_failed(tmp_path):
    driver = SqliteDriver(sqlite_url(tmp_path))
    driver.migrate()
    now = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)
    driver.register_instance("a", "tenant", None, now)
    before = driver.stats()
    seen_outside: list = []

    def failing(tx):
        tx.insert_checkpoint("a", "two", b"2", now)
        raise RuntimeError("refused after writing")

    def serve():
        driver.run(lambda tx: tx.insert_checkpoint("a", "one", b"1", now))
        with pytest.raises(RuntimeError):
            driver.run(failing)
        # Reads of the batch see its earlier writes; other threads see none of them.
        inside = driver.run(lambda tx: tx.get_checkpoint("a", "one"), write=False)
        reader = threading.Thread(
            target=lambda: seen_outside.append(
                driver.run(lambda tx: tx.get_checkpoint("a", "one"), write=False)
            )
        )
        reader.start()
        reader.join()
        driver.run(lambda tx: tx.insert_checkpoint("a", "three", b"3", now))
        return inside

    try:
        inside = driver.run_batch(serve)
        assert inside.state == b"1"
        assert seen_outside == [None]
        read = driver.run(
            lambda tx: [tx.get_checkpoint("a", name) for name in ("one", "two", "three")],
            write=False,
        )
        assert [row and row.state for row in read] == [b"1", None, b"3"]
        after = driver.stats()
        assert after["commits"] == before["commits"] + 1
        assert after["transactions"] == before["transactions"] + 3
    finally:
        driver.close()
