"""Everything runtara-core needs from aioquic beyond its public API, in one place.

aioquic has no setting for the number of concurrent streams a peer may open,
no way to refuse a connection before its handshake, no peer address and no
peer certificate on a connection, and it keeps TLS buffers and handshake
timers that we must reach to free or cancel. It draws connection ids and their
stateless reset tokens at random in each connection, never sends a stateless
reset, and its client does not recognise one. Each of those reaches into
aioquic's private attributes here, and only here;
``tests/unit/test_aioquic_adapter.py`` checks every one of them against the
installed aioquic, so an upgrade that changes them fails loudly there instead
of misbehaving at run time.

(Subclasses of :class:`~aioquic.asyncio.protocol.QuicConnectionProtocol` use
``self._quic``, the connection they wrap: that is aioquic's documented way of
extending the protocol, and its own examples do it.)
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable
from typing import Protocol

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.buffer import Buffer
from aioquic.quic import events
from aioquic.quic.configuration import SMALLEST_MAX_DATAGRAM_SIZE
from aioquic.quic.connection import QuicConnection, QuicConnectionState
from aioquic.quic.packet import QuicErrorCode, QuicPacketType, pull_quic_header
from cryptography import x509

STATELESS_RESET_REASON = "stateless reset: the server does not know this connection (it restarted)"
"""The reason of the ConnectionTerminated event of a connection ended by a stateless reset."""
_SMALLEST_RESET = 21
_TOKEN_SIZE = 16


class ConnectionIds(Protocol):
    """Where a server's connection ids and their stateless reset tokens come from."""

    connection_id_length: int

    def new_connection_id(self) -> bytes: ...

    def reset_token(self, connection_id: bytes) -> bytes: ...

    def reset_for(self, datagram: bytes, connection_id: bytes) -> bytes | None:
        """The stateless reset to answer a short-header ``datagram`` for
        ``connection_id``, unknown to the server; None to stay silent."""


def set_stream_limits(connection: QuicConnection, bidirectional: int, unidirectional: int) -> None:
    """How many streams of each kind the peer may open at once.

    Sent in the transport parameters of the first packet, so this must run
    before the connection handles its first datagram.
    """
    for limit, value in (
        (connection._local_max_streams_bidi, bidirectional),
        (connection._local_max_streams_uni, unidirectional),
    ):
        limit.value = limit.sent = value


def issue_connection_ids(connection: QuicConnection, ids: ConnectionIds) -> None:
    """Have a server connection use ids and reset tokens from ``ids``: its first
    one (sent in the transport parameters, so this must run before the
    connection handles its first datagram) and every one it issues later in
    NEW_CONNECTION_ID frames."""
    first = connection._host_cids[0]
    _reissue(first, ids)
    connection.host_cid = connection._local_initial_source_connection_id = first.cid
    draw_at_random = connection._replenish_connection_ids

    def replenish() -> None:
        # aioquic appends the new ids, not yet sent; the endpoint registers
        # each when its frame is written.
        issued = len(connection._host_cids)
        draw_at_random()
        for connection_id in connection._host_cids[issued:]:
            _reissue(connection_id, ids)

    connection._replenish_connection_ids = replenish


def _reissue(connection_id, ids: ConnectionIds) -> None:
    connection_id.cid = ids.new_connection_id()
    connection_id.stateless_reset_token = ids.reset_token(connection_id.cid)


def end_on_stateless_reset(protocol: QuicConnectionProtocol, datagram: bytes) -> bool:
    """If ``datagram`` is the peer's stateless reset (RFC 9000 section 10.3.1),
    end the client connection now and report it; True if it was one.

    A reset carries, as its last 16 bytes, the token the server gave with the
    connection id the client uses. The connection sends nothing more: it is
    terminated at once, with no draining period, since the peer has no state
    left to drain.
    """
    connection = protocol._quic
    token = connection._peer_cid.stateless_reset_token
    if (
        not token
        or len(datagram) < _SMALLEST_RESET
        or datagram[0] & 0xC0 != 0x40
        or not hmac.compare_digest(datagram[-_TOKEN_SIZE:], token)
    ):
        return False
    if connection._state == QuicConnectionState.TERMINATED:
        return True
    if connection._close_event is None:
        connection._close_event = events.ConnectionTerminated(
            error_code=QuicErrorCode.NO_ERROR, frame_type=None, reason_phrase=STATELESS_RESET_REASON
        )
    connection._close_end()
    protocol._process_events()
    protocol.transmit()  # cancels the connection's timer
    return True


def peer_address(connection: QuicConnection) -> tuple[str, int] | None:
    paths = connection._network_paths
    return paths[0].addr[:2] if paths else None


def client_of(protocol: QuicConnectionProtocol) -> tuple[bytes, tuple[str, int] | None]:
    """The connection id the client of a server connection addresses it by, and
    the client's address (None before its first datagram).

    The id is the connection's first, the source id of its Initial packets. A
    client keeps it unless it changes ids itself: quinn and aioquic clients do
    that only when they migrate, or when told to retire it, which this server
    never does.
    """
    connection = protocol._quic
    return connection._local_initial_source_connection_id, peer_address(connection)


def peer_certificate(connection: QuicConnection) -> x509.Certificate | None:
    """The certificate the peer presented in the handshake of a connection that
    started it (None until the certificate arrived).

    A client gets it whether or not it verifies it, which is what pinning a
    server's certificate by its fingerprint needs.
    """
    return connection.tls._peer_certificate


def release_handshake_buffers(connection: QuicConnection) -> None:
    """Free the TLS output buffers once the handshake is done.

    aioquic keeps a 16 KiB buffer per epoch for the connection's whole life.
    A server's handshake is confirmed when it completes and the Initial and
    Handshake keys are discarded then; after it, a QUIC server's TLS writes
    nothing (we issue no session tickets), so none of the three buffers is
    written again. Freeing them saves 41 KiB per connection.
    """
    buffers = connection._crypto_buffers
    for epoch in list(buffers):
        buffers[epoch] = Buffer(capacity=0)


def replies_unacknowledged(connection: QuicConnection) -> bool:
    """Some stream's data and FIN were written and the peer has not acknowledged them all."""
    return any(
        stream.sender._buffer_fin is not None and not stream.sender.is_finished
        for stream in connection._streams.values()
    )


def abort_handshake(protocol: QuicConnectionProtocol) -> None:
    """Give up on a client connection (its handshake unfinished, or its server
    not trusted): fail its waiter, close it and cancel its timer, so nothing is
    left pending."""
    waiter, protocol._connected_waiter = protocol._connected_waiter, None
    if waiter is not None and not waiter.done():
        waiter.cancel()
    protocol.close()
    if protocol._timer is not None:
        protocol._timer.cancel()
        protocol._timer = None


def fail_handshake(protocol: QuicConnectionProtocol, error: BaseException) -> bool:
    """Fail a client's pending handshake wait with ``error``; False if none is pending."""
    waiter = protocol._connected_waiter
    if waiter is None or waiter.done():
        return False
    waiter.set_exception(error)
    return True


class Steering(Protocol):
    """A server process's part in sharing a UDP port with others
    (:class:`runtara.server.steering.Steering`)."""

    def start(
        self, loop: asyncio.AbstractEventLoop, deliver: Callable[[bytes, tuple], None]
    ) -> None:
        """Give datagrams other processes hand this one to ``deliver``, on ``loop``."""

    def connections_changed(self, count: int) -> None: ...

    def hand_over(self, datagram: bytes, address: tuple, client_id: bytes, new: bool) -> bool:
        """True if another process gets this long-header datagram for ``client_id``."""


class AdmittingServer(QuicServer):
    """aioquic's server endpoint, asking ``admit`` about every new connection.

    ``admit(protocol, address)`` returns None to accept, or the reason to
    refuse: the connection is then closed at once with CONNECTION_REFUSED, so
    the client sees a clear error instead of a timeout.

    With ``connection_ids``, every connection's ids and reset tokens come from
    there, and a short-header packet for a connection id the endpoint does not
    know is answered with the stateless reset it gives (aioquic drops those
    silently). Long-header packets keep aioquic's handling.

    With ``steering`` (its socket shares its port with other server processes),
    it reports its number of connections (handshaking, open or closing) each
    time it changes, offers clients' long-header packets to hand over to
    another process, and takes those handed to it.
    """

    def __init__(
        self,
        *,
        admit: Callable[[QuicConnectionProtocol, str], str | None],
        connection_ids: ConnectionIds | None = None,
        steering: Steering | None = None,
        **kwargs,
    ):
        if connection_ids is not None:
            length = kwargs["configuration"].connection_id_length
            if length != connection_ids.connection_id_length:
                raise ValueError(
                    f"the configuration's connection ids have {length} bytes, "
                    f"the issued ones {connection_ids.connection_id_length}"
                )
        super().__init__(**kwargs)
        self._admit = admit
        self._address = "?"
        self._ids = connection_ids
        self._live: set[QuicConnectionProtocol] = set()
        self._steering = steering
        inner = self._create_protocol

        def create(connection: QuicConnection, stream_handler=None):
            if connection_ids is not None:
                # Before aioquic registers the connection under its first id.
                issue_connection_ids(connection, connection_ids)
            protocol = inner(connection, stream_handler=stream_handler)
            self._live.add(protocol)
            if self._steering is not None:
                self._steering.connections_changed(len(self._live))
            refusal = self._admit(protocol, self._address)
            if refusal is not None:
                connection.close(error_code=QuicErrorCode.CONNECTION_REFUSED, reason_phrase=refusal)
            return protocol

        self._create_protocol = create

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self._steering is not None:
            self._steering.start(self._loop, self._receive)

    def _connection_terminated(self, protocol: QuicConnectionProtocol) -> None:
        super()._connection_terminated(protocol)
        self._live.discard(protocol)
        if self._steering is not None:
            self._steering.connections_changed(len(self._live))

    def datagram_received(self, data: bytes | str, addr) -> None:
        if self._steering is not None and data and data[0] & 0x80 and self._handed(data, addr):
            return
        self._receive(data, addr)

    def _handed(self, data: bytes, addr) -> bool:
        """Whether another process takes this long-header datagram."""
        try:
            header = pull_quic_header(
                Buffer(data=data), host_cid_length=self._configuration.connection_id_length
            )
        except ValueError:
            return False
        client_id = header.destination_cid
        # What makes aioquic's endpoint start a connection.
        new = (
            client_id not in self._protocols
            and header.packet_type == QuicPacketType.INITIAL
            and len(data) >= SMALLEST_MAX_DATAGRAM_SIZE
        )
        return self._steering.hand_over(data, addr, client_id, new)

    def _receive(self, data: bytes, addr) -> None:
        # aioquic creates a new connection's protocol while handling its first
        # datagram; remember whose it is.
        self._address = f"{addr[0]}:{addr[1]}"
        if self._ids is not None and data and not data[0] & 0x80:  # a short header
            connection_id = data[1 : 1 + self._ids.connection_id_length]
            if connection_id not in self._protocols:
                reset = self._ids.reset_for(data, connection_id)
                if reset is not None:
                    self._transport.sendto(reset, addr)
                return
        super().datagram_received(data, addr)

    @property
    def transport(self) -> asyncio.DatagramTransport | None:
        return self._transport


def server_transport(server: QuicServer) -> asyncio.DatagramTransport | None:
    return server._transport
