"""QUIC transport settings: ALPN, stream credit, keep-alive, connection limits."""

from __future__ import annotations

import asyncio
import ssl
import time

import pytest
from aioquic.asyncio.client import connect
from aioquic.quic.configuration import QuicConfiguration

from runtara import errors
from runtara.client.connection import Connection
from runtara.protocol import instance_pb2 as pb
from tests.support import LoopbackServer, RpcClient, sqlite_url


@pytest.fixture
def database_url(tmp_path):
    """The transport does not depend on the driver: SQLite only (the drivers are
    held to the same rules by the conformance kit)."""
    return sqlite_url(tmp_path)


def test_a_client_offering_no_alpn_connects(server):
    # What quinn/rustls clients do: no ALPN extension at all.
    async def handshake():
        configuration = QuicConfiguration(
            is_client=True, alpn_protocols=None, verify_mode=ssl.CERT_NONE
        )
        async with connect(*server.address, configuration=configuration) as protocol:
            return protocol._quic.tls.alpn_negotiated

    assert asyncio.run(handshake()) is None


def test_clients_get_at_least_1000_concurrent_request_streams(server, client):
    assert client.connection._protocol._quic._remote_max_streams_bidi >= 1000
    assert client.register("many").success

    async def concurrent(count):
        connection = client.connection
        request = pb.RpcRequest(get_instance_status=pb.GetInstanceStatusRequest(instance_id="many"))
        replies = await asyncio.gather(
            *(connection.call(request, pb.RpcResponse) for _ in range(count))
        )
        return [reply.get_instance_status.status for reply in replies]

    assert client.loop.run(concurrent(600), 60) == [pb.STATUS_RUNNING] * 600


@pytest.mark.parametrize(
    ("keep_alive_ms", "closed_when_idle"),
    [(200, False), (0, True)],
    ids=["keep-alive-pings-hold-an-idle-connection-open", "without-them-it-times-out"],
)
def test_keep_alive_decides_whether_an_idle_connection_times_out(
    tmp_path, keep_alive_ms, closed_when_idle
):
    with LoopbackServer(
        sqlite_url(tmp_path), keep_alive_ms=keep_alive_ms, idle_timeout_ms=1000
    ) as server:

        async def idle(seconds):
            connection = await Connection.open(*server.address, idle_timeout=1.0)
            await asyncio.sleep(seconds)
            closed = connection.closed
            await connection.close()
            return closed

        assert asyncio.run(idle(2.5)) is closed_when_idle


def test_connections_beyond_the_limit_are_refused_clearly(tmp_path):
    with LoopbackServer(sqlite_url(tmp_path), max_connections=2) as server:
        first, second = server.client(), server.client()
        with pytest.raises(errors.ConnectFailed):
            RpcClient(server.address, timeout=3)
        first.close()
        time.sleep(0.3)
        third = server.client()
        assert third.register("after-a-slot-freed").success
        assert second.register("still-there").success


def test_udp_buffers_are_raised(server):
    import socket

    sock = server.server._endpoints[0].transport.get_extra_info("socket")
    with open("/proc/sys/net/core/rmem_max") as limit:
        ceiling = int(limit.read())
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= min(2 * 1024 * 1024, ceiling)
