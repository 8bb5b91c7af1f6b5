"""Every private aioquic attribute the adapter uses, checked against the installed aioquic.

A failure here means an aioquic upgrade changed something runtara-core reaches
into: fix runtara/aioquic_adapter.py before anything else.
"""

from __future__ import annotations

import asyncio
import ssl

import aioquic
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from runtara import aioquic_adapter
from runtara.server import tls

SERVER_ADDRESS = ("127.0.0.1", 4433)
CLIENT_ADDRESS = ("127.0.0.1", 50000)


def pair(identity: tls.Identity | None = None) -> tuple[QuicConnection, QuicConnection]:
    identity = identity or tls.self_signed()
    server_config = QuicConfiguration(is_client=False, alpn_protocols=None)
    server_config.certificate = identity.certificate
    server_config.private_key = identity.private_key
    client = QuicConnection(
        configuration=QuicConfiguration(
            is_client=True, alpn_protocols=None, verify_mode=ssl.CERT_NONE
        )
    )
    server = QuicConnection(
        configuration=server_config,
        original_destination_connection_id=client.original_destination_connection_id,
    )
    return client, server


def exchange(client: QuicConnection, server: QuicConnection, now: float = 0.0) -> None:
    """Move datagrams both ways until neither side has anything to send (the clock
    moves on by 10 ms a round, so that pacing lets everything out)."""
    for round_number in range(50):
        now += 0.01 * round_number
        moved = False
        for sender, receiver, source in (
            (client, server, CLIENT_ADDRESS),
            (server, client, SERVER_ADDRESS),
        ):
            for data, _ in sender.datagrams_to_send(now):
                receiver.receive_datagram(data, source, now)
                moved = True
        if not moved:
            return


def handshake(client: QuicConnection, server: QuicConnection) -> None:
    client.connect(SERVER_ADDRESS, now=0.0)
    exchange(client, server)
    assert any(isinstance(e, events.HandshakeCompleted) for e in iter(server.next_event, None))


def test_the_stream_limits_reach_the_peer_in_the_transport_parameters():
    client, server = pair()
    aioquic_adapter.set_stream_limits(server, 1000, 7)
    handshake(client, server)
    assert client._remote_max_streams_bidi == 1000
    assert client._remote_max_streams_uni == 7


def test_the_peer_address_is_the_first_network_path():
    client, server = pair()
    assert aioquic_adapter.peer_address(server) is None
    handshake(client, server)
    assert aioquic_adapter.peer_address(server) == CLIENT_ADDRESS


def test_the_client_sees_the_certificate_the_server_presented():
    identity = tls.self_signed()
    client, server = pair(identity)
    client.connect(SERVER_ADDRESS, now=0.0)
    assert aioquic_adapter.peer_certificate(client) is None
    exchange(client, server)
    assert aioquic_adapter.peer_certificate(client) == identity.certificate


def test_handshake_buffers_can_be_freed_and_the_connection_still_works():
    client, server = pair()
    handshake(client, server)
    aioquic_adapter.release_handshake_buffers(server)
    assert all(buffer.capacity == 0 for buffer in server._crypto_buffers.values())
    stream_id = client.get_next_available_stream_id()
    client.send_stream_data(stream_id, b"ping", end_stream=True)
    exchange(client, server, now=1.0)
    received = [
        e for e in iter(server.next_event, None) if isinstance(e, events.StreamDataReceived)
    ]
    assert received[0].data == b"ping"


def test_unacknowledged_replies_are_seen_until_the_peer_acknowledges_them():
    client, server = pair()
    handshake(client, server)
    stream_id = client.get_next_available_stream_id()
    client.send_stream_data(stream_id, b"request", end_stream=True)
    exchange(client, server, now=1.0)
    assert not aioquic_adapter.replies_unacknowledged(server)
    server.send_stream_data(stream_id, b"reply", end_stream=True)
    assert aioquic_adapter.replies_unacknowledged(server)
    exchange(client, server, now=2.0)
    client.send_ping(1)  # makes the client send its acknowledgement now
    exchange(client, server, now=5.0)
    assert not aioquic_adapter.replies_unacknowledged(server)


def test_a_client_handshake_wait_can_be_failed_and_aborted():
    async def scenario():
        client, _ = pair()
        protocol = QuicConnectionProtocol(client)
        protocol.connection_made(FakeTransport())
        protocol.connect(SERVER_ADDRESS)
        waiter = asyncio.ensure_future(protocol.wait_connected())
        await asyncio.sleep(0)
        assert aioquic_adapter.fail_handshake(protocol, ConnectionError("port closed"))
        assert not aioquic_adapter.fail_handshake(protocol, ConnectionError("again"))
        try:
            await waiter
        except ConnectionError as error:
            assert str(error) == "port closed"
        aioquic_adapter.abort_handshake(protocol)
        assert protocol._timer is None and protocol._connected_waiter is None

    asyncio.run(scenario())


class FakeTransport(asyncio.DatagramTransport):
    """Swallows datagrams: the test is about the protocol object, not the network."""

    def sendto(self, data, addr=None) -> None:
        pass


def test_the_admitting_server_asks_about_each_new_connection_and_knows_its_address():
    asked = []

    async def scenario():
        client, _ = pair()
        identity = tls.self_signed()
        config = QuicConfiguration(is_client=False, alpn_protocols=None)
        config.certificate = identity.certificate
        config.private_key = identity.private_key
        server = aioquic_adapter.AdmittingServer(
            configuration=config,
            admit=lambda protocol, address: asked.append((protocol, address)) or "no room",
        )
        server.connection_made(FakeTransport())
        assert aioquic_adapter.server_transport(server) is server.transport is not None
        client.connect(SERVER_ADDRESS, now=0.0)
        for data, _ in client.datagrams_to_send(0.0):
            server.datagram_received(data, CLIENT_ADDRESS)
        await asyncio.sleep(0)

    asyncio.run(scenario())
    assert len(asked) == 1
    protocol, address = asked[0]
    assert isinstance(protocol, QuicConnectionProtocol) and address == "127.0.0.1:50000"
    assert protocol._quic._close_event is not None  # refused: closed with CONNECTION_REFUSED


def test_the_installed_aioquic_is_a_1_x_release():
    assert aioquic.__version__.split(".")[0] == "1", aioquic.__version__
