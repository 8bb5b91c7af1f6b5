"""Graceful and ungraceful shutdown: SIGTERM under load finishes what it
accepted; a second SIGTERM, or the end of the grace period, exits promptly."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import threading
import time

from runtara import errors
from tests.support import RpcClient, ServerProcess, wait_for


def test_sigterm_under_load_finishes_in_flight_requests_and_loses_nothing(tmp_path):
    server = ServerProcess("--shutdown-grace", "10", cwd=tmp_path)
    clients = [RpcClient(server.address, timeout=20) for _ in range(16)]
    acknowledged: list[tuple[str, str, bytes]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(index: int) -> None:
        client = clients[index]
        instance = f"busy-{index}"
        client.register(instance)
        step = 0
        while not stop.is_set():
            state = f"{instance}/{step}".encode()
            try:
                reply = client.checkpoint(instance, f"cp-{step}", state)
            except errors.ClientError:
                return  # the connection was closed by the stopping server
            if reply.HasField("error"):
                assert reply.error.code == "UNAVAILABLE"
                return
            with lock:
                acknowledged.append((instance, f"cp-{step}", state))
            step += 1

    threads = [threading.Thread(target=load, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(acknowledged) > 200, timeout=30)
    server.signal(signal.SIGTERM)
    assert server.wait(timeout=20) == 0
    stop.set()
    for thread in threads:
        thread.join(10)
    for client in clients:
        client.close()
    assert "stopped" in server.output()
    with sqlite3.connect(tmp_path / "runtara.db") as db:
        stored = {
            (instance, checkpoint): state
            for instance, checkpoint, state in db.execute(
                "SELECT instance_id, checkpoint_id, state FROM checkpoints"
            )
        }
    lost = [entry for entry in acknowledged if stored.get(entry[:2]) != entry[2]]
    assert lost == []


@contextlib.contextmanager
def blocked_server(tmp_path, grace: str):
    """A server with one request stuck behind a held SQLite write lock; the lock and
    the client are let go on leaving."""
    server = ServerProcess("--shutdown-grace", grace, "--log-level", "debug", cwd=tmp_path)
    client = RpcClient(server.address, timeout=60)
    assert client.register("stuck").success
    blocker = sqlite3.connect(tmp_path / "runtara.db", isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        threading.Thread(
            target=lambda: _ignore(lambda: client.checkpoint("stuck", "cp", b"x")), daemon=True
        ).start()
        wait_for(lambda: "checkpoint from" in server.output())
        yield server
    finally:
        blocker.close()
        client.close()


def _ignore(call) -> None:
    try:
        call()
    except errors.ClientError:
        pass


def test_the_end_of_the_grace_period_exits_promptly(tmp_path):
    with blocked_server(tmp_path, grace="1") as server:
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        assert server.wait(timeout=15) == 0
        assert time.monotonic() - started < 10
        assert "requests still running past the grace period" in server.output()


def test_a_second_sigterm_exits_at_once(tmp_path):
    with blocked_server(tmp_path, grace="60") as server:
        server.signal(signal.SIGTERM)
        wait_for(lambda: "finishing in-flight requests" in server.output())
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        assert server.wait(timeout=15) == 1
        assert time.monotonic() - started < 10
        assert "second SIGTERM: exiting now" in server.output()
    with sqlite3.connect(tmp_path / "runtara.db") as db:  # nothing half-written
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT count(*) FROM checkpoints").fetchone()[0] == 0


def test_sigterm_right_after_start_up_still_stops_cleanly(tmp_path):
    for _ in range(5):
        server = ServerProcess(cwd=tmp_path)
        server.signal(signal.SIGTERM)  # as soon as the server says it is serving
        assert server.wait() == 0
        assert "stopped" in server.output()
