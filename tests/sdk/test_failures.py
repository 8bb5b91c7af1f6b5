from __future__ import annotations

import signal
import socket
import threading

import pytest

from runtara import records
from runtara.sdk import (
    ClientError,
    ConnectFailed,
    Instance,
    PayloadTooLarge,
    RequestTimeout,
)
from tests.sdk.conftest import config_for
from tests.support import LoopbackServer, ServerProcess, sqlite_url, wait_for

MiB = 1024 * 1024


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.timeout(10)
def test_no_server_at_start_is_a_clear_connect_error():
    config = config_for(("127.0.0.1", free_udp_port()), connect_timeout_ms=300)
    with Instance(config) as instance:
        with pytest.raises(
            ConnectFailed, match=r"register_instance: cannot connect to 127.*refused"
        ):
            instance.register()


@pytest.mark.timeout(20)
def test_a_server_killed_during_a_call_is_a_clear_error_not_a_hang(tmp_path):
    server = ServerProcess("--database-url", str(tmp_path / "runtara.db"), cwd=tmp_path)
    try:
        instance = Instance(config_for(server.address, request_timeout_ms=500))
        instance.register()
        threading.Timer(0.2, server.signal, args=(signal.SIGKILL,)).start()
        with pytest.raises(
            RequestTimeout, match=r"^sleep: no reply from 127\.0\.0\.1:\d+ within 1\.5s$"
        ):
            instance.sleep(1.0)
        with pytest.raises(ClientError, match=r"^checkpoint: "):
            instance.checkpoint("after", b"")
        instance.close()
    finally:
        server.kill()


@pytest.mark.timeout(20)
def test_the_connection_is_opened_again_after_a_server_restart(tmp_path):
    database = str(tmp_path / "runtara.db")
    first = ServerProcess("--database-url", database, cwd=tmp_path)
    port = first.address[1]
    with Instance(config_for(first.address)) as instance:
        instance.register()
        instance.checkpoint("before", b"1")
        first.signal(signal.SIGTERM)
        assert first.wait() == 0
        second = ServerProcess("--database-url", database, "--port", str(port), cwd=tmp_path)
        try:
            assert instance.checkpoint("after", b"2").found is False
            assert instance.get_checkpoint("before") == b"1"
        finally:
            second.signal(signal.SIGTERM)
            second.wait()


def test_an_oversized_state_is_refused_before_sending(server, instance):
    state = b"x" * (64 * MiB - 10)  # fits a frame alone, not with the request around it
    with pytest.raises(PayloadTooLarge, match=r"^checkpoint: .* over the 67108864-byte"):
        instance.checkpoint("big", state)
    assert server.read(lambda tx: tx.get_checkpoint("inst-1", "big")) is None
    with pytest.raises(PayloadTooLarge, match="^instance_event: "):
        instance.completed(state)
    assert server.instance("inst-1").status is records.InstanceStatus.RUNNING
    # nothing is sent: not even a connection is needed to refuse it
    nowhere = config_for(("127.0.0.1", free_udp_port()), connect_timeout_ms=100)
    with Instance(nowhere) as unconnected, pytest.raises(PayloadTooLarge):
        unconnected.checkpoint("big", state)


def test_overloaded_answers_are_retried(tmp_path):
    server = LoopbackServer(sqlite_url(tmp_path), max_concurrent=1, max_pending=0)
    blocker = server.client()
    writer_free = threading.Event()
    try:
        with Instance(config_for(server.address)) as instance:
            instance.register()
            # hold the storage's writer, so that the only worker stays busy
            threading.Thread(
                target=server.storage.run, args=(lambda tx: writer_free.wait(),)
            ).start()
            busy = threading.Thread(target=blocker.checkpoint, args=("inst-1", "busy", b""))
            busy.start()
            wait_for(lambda: server.server.stats()["running"] == 1)
            threading.Timer(0.3, writer_free.set).start()
            assert instance.checkpoint("step", b"state").found is False
            assert server.server.stats()["rejected"] >= 1
            busy.join()
    finally:
        writer_free.set()
        server.stop()
