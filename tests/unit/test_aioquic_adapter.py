"""Every private aioquic attribute the adapter uses, checked against the installed aioquic.

A failure here means an aioquic upgrade changed something runtara-core reaches
into: fix runtara/aioquic_adapter.py before anything else.
"""

from __future__ import annotations

import asyncio
import socket
import ssl

import aioquic
import pytest
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from runtara import aioquic_adapter
from runtara.server import tls
from runtara.server.stateless_reset import StatelessResets

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


def connecting_client() -> QuicConnectionProtocol:
    """A client protocol that has begun its handshake (call it in a running loop)."""
    client, _ = pair()
    protocol = QuicConnectionProtocol(client)
    protocol.connection_made(FakeTransport())
    protocol.connect(SERVER_ADDRESS)
    return protocol


def test_a_client_handshake_wait_can_be_failed_and_aborted():
    async def scenario():
        protocol = connecting_client()
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
    """Keeps the datagrams sent: the test is about the protocol object, not the network."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        super().__init__(extra={"socket": sock} if sock else None)
        self.sent: list[bytes] = []

    def sendto(self, data, addr=None) -> None:
        self.sent.append(data)


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


class Counting:
    """A steering that keeps what the endpoint reports and hands nothing over."""

    def __init__(self) -> None:
        self.reported: list[int] = []
        self.offered: list[tuple[bytes, bool]] = []

    def start(self, loop, deliver) -> None:
        self.deliver = deliver

    def connections_changed(self, count: int) -> None:
        self.reported.append(count)

    def hand_over(self, datagram, address, client_id, new) -> bool:
        self.offered.append((client_id, new))
        return False


def test_a_steered_server_reports_its_connections_and_offers_clients_first_flights():
    steering = Counting()

    async def scenario():
        identity = tls.self_signed()
        config = QuicConfiguration(is_client=False, alpn_protocols=None)
        config.certificate = identity.certificate
        config.private_key = identity.private_key
        server = aioquic_adapter.AdmittingServer(
            configuration=config, admit=lambda protocol, address: "no room", steering=steering
        )
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            server.connection_made(FakeTransport(sock))
        clients = []
        for _ in range(2):
            client, _ = pair()
            client.connect(SERVER_ADDRESS, now=0.0)
            clients.append(client)
            for data, _ in client.datagrams_to_send(0.0):
                server.datagram_received(data, CLIENT_ADDRESS)
        assert steering.reported == [1, 2]
        assert steering.offered == [(c.original_destination_connection_id, True) for c in clients]
        # A datagram handed over by another process is taken as it is: not offered again.
        again, _ = pair()
        again.connect(SERVER_ADDRESS, now=0.0)
        for data, _ in again.datagrams_to_send(0.0):
            steering.deliver(data, CLIENT_ADDRESS)
        assert steering.reported == [1, 2, 3] and len(steering.offered) == 2
        # Refused, each connection closes; once its closing period is over aioquic
        # tells the endpoint, which reports it.
        for protocol in set(server._protocols.values()):
            connection = protocol._quic
            while (timer := connection.get_timer()) is not None:
                connection.handle_timer(timer)
            protocol._process_events()
        assert steering.reported == [1, 2, 3, 2, 1, 0]

    asyncio.run(scenario())


def resets(process: int = 2, processes: int = 3) -> StatelessResets:
    return StatelessResets(bytes(range(32)), process=process, processes=processes)


def test_issued_connection_ids_and_their_reset_tokens_reach_the_client():
    ids = resets()
    client, server = pair()
    aioquic_adapter.issue_connection_ids(server, ids)
    assert server.host_cid[0] == 2
    handshake(client, server)
    exchange(client, server, now=1.0)  # NEW_CONNECTION_ID frames
    first = client._peer_cid
    assert first.cid == server.host_cid
    assert first.stateless_reset_token == ids.reset_token(first.cid)
    later = client._peer_cid_available
    assert len(later) >= 1
    for issued in later:
        assert issued.cid[0] == 2 and len(issued.cid) == 8
        assert issued.stateless_reset_token == ids.reset_token(issued.cid)


def test_connection_ids_issued_after_one_is_retired_come_from_the_same_source():
    ids = resets()
    client, server = pair()
    aioquic_adapter.issue_connection_ids(server, ids)
    handshake(client, server)
    exchange(client, server, now=1.0)
    before = {connection_id.cid for connection_id in server._host_cids}
    client.change_connection_id()  # retires the first id: the server issues another
    exchange(client, server, now=2.0)
    exchange(client, server, now=3.0)
    after = {connection_id.cid for connection_id in server._host_cids}
    assert after - before
    assert all(cid[0] == 2 for cid in after)
    for issued in client._peer_cid_available:
        assert issued.stateless_reset_token == ids.reset_token(issued.cid)


def test_the_client_of_a_server_connection_addresses_it_by_its_first_id():
    async def scenario():
        client, server = pair()
        aioquic_adapter.issue_connection_ids(server, resets())
        protocol = QuicConnectionProtocol(server)
        assert aioquic_adapter.client_of(protocol)[1] is None
        handshake(client, server)
        exchange(client, server, now=1.0)  # NEW_CONNECTION_ID frames: the client keeps the first
        connection_id, address = aioquic_adapter.client_of(protocol)
        assert connection_id == client._peer_cid.cid and connection_id[0] == 2
        assert address == CLIENT_ADDRESS

    asyncio.run(scenario())


def established_client(server_ids: StatelessResets) -> tuple[QuicConnectionProtocol, bytes]:
    """A client protocol with a finished handshake, and the connection id it sends to."""
    client, server = pair()
    aioquic_adapter.issue_connection_ids(server, server_ids)
    handshake(client, server)
    protocol = QuicConnectionProtocol(client)
    protocol.connection_made(FakeTransport())
    return protocol, client._peer_cid.cid


def stateless_reset(token: bytes, size: int = 40) -> bytes:
    return bytes([0x5A]) + bytes(range(size - 17)) + token


def test_a_client_ends_its_connection_on_the_servers_stateless_reset():
    async def scenario():
        ids = resets()
        protocol, cid = established_client(ids)
        events_seen = []
        protocol.quic_event_received = events_seen.append
        assert aioquic_adapter.end_on_stateless_reset(
            protocol, stateless_reset(ids.reset_token(cid))
        )
        terminated = [e for e in events_seen if isinstance(e, events.ConnectionTerminated)]
        assert terminated[0].reason_phrase == aioquic_adapter.STATELESS_RESET_REASON
        await asyncio.wait_for(protocol.wait_closed(), 1)
        assert protocol._timer is None
        assert protocol._quic.datagrams_to_send(now=10.0) == []
        # A second reset is recognised and changes nothing.
        assert aioquic_adapter.end_on_stateless_reset(
            protocol, stateless_reset(ids.reset_token(cid))
        )
        assert len([e for e in events_seen if isinstance(e, events.ConnectionTerminated)]) == 1

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "datagram",
    [
        pytest.param(lambda token, other: stateless_reset(other), id="another token"),
        pytest.param(lambda token, other: stateless_reset(token, 20), id="too short"),
        pytest.param(lambda token, other: b"\xc0" + stateless_reset(token)[1:], id="long header"),
        pytest.param(lambda token, other: b"\x1a" + stateless_reset(token)[1:], id="no fixed bit"),
    ],
)
def test_a_client_ignores_what_is_not_its_servers_stateless_reset(datagram):
    async def scenario():
        ids = resets()
        protocol, cid = established_client(ids)
        other = StatelessResets(bytes(32), process=2, processes=3).reset_token(cid)
        assert not aioquic_adapter.end_on_stateless_reset(
            protocol, datagram(ids.reset_token(cid), other)
        )
        assert protocol._quic._close_event is None

    asyncio.run(scenario())


def test_a_client_before_the_handshake_has_no_token_to_match():
    async def scenario():
        protocol = connecting_client()
        assert not aioquic_adapter.end_on_stateless_reset(protocol, stateless_reset(bytes(16)))

    asyncio.run(scenario())


def admitting_server(ids: StatelessResets | None) -> aioquic_adapter.AdmittingServer:
    identity = tls.self_signed()
    config = QuicConfiguration(is_client=False, alpn_protocols=None)
    config.certificate = identity.certificate
    config.private_key = identity.private_key
    server = aioquic_adapter.AdmittingServer(
        configuration=config, admit=lambda protocol, address: None, connection_ids=ids
    )
    server.connection_made(FakeTransport())
    return server


def test_the_server_endpoint_answers_a_packet_for_an_unknown_connection_with_a_reset():
    async def scenario():
        ids = resets()
        server = admitting_server(ids)
        client, _ = pair()
        client.connect(SERVER_ADDRESS, now=0.0)
        for data, _ in client.datagrams_to_send(0.0):
            server.datagram_received(data, CLIENT_ADDRESS)
        await asyncio.sleep(0)
        # The connection is registered under the id issued for it.
        (protocol,) = set(server._protocols.values())
        assert protocol._quic.host_cid in server._protocols
        assert protocol._quic.host_cid[0] == 2
        sent = server.transport.sent
        handshake_flight = len(sent)

        known = protocol._quic.host_cid
        server.datagram_received(bytes([0x40]) + known + bytes(50), CLIENT_ADDRESS)
        assert all(d[-16:] != ids.reset_token(known) for d in sent[handshake_flight:])

        unknown = bytes([2]) + bytes(range(7))
        trigger = bytes([0x40]) + unknown + bytes(50)
        before = len(sent)
        server.datagram_received(trigger, CLIENT_ADDRESS)
        (reset,) = sent[before:]
        assert len(reset) < len(trigger) and reset[-16:] == ids.reset_token(unknown)

        sibling = bytes([1]) + bytes(range(7))
        server.datagram_received(bytes([0x40]) + sibling + bytes(50), CLIENT_ADDRESS)
        assert len(sent) == before + 1 and ids.withheld == 1

    asyncio.run(scenario())


def test_without_connection_ids_the_server_endpoint_stays_silent_as_aioquic_does():
    async def scenario():
        server = admitting_server(None)
        server.datagram_received(bytes([0x40]) + bytes(60), CLIENT_ADDRESS)
        assert server.transport.sent == []

    asyncio.run(scenario())


def test_the_configured_connection_id_length_must_be_the_issued_one():
    async def scenario():
        config = QuicConfiguration(is_client=False, connection_id_length=4)
        with pytest.raises(ValueError, match="4 bytes"):
            aioquic_adapter.AdmittingServer(
                configuration=config, admit=lambda protocol, address: None, connection_ids=resets()
            )

    asyncio.run(scenario())


def test_the_installed_aioquic_is_a_1_x_release():
    assert aioquic.__version__.split(".")[0] == "1", aioquic.__version__
