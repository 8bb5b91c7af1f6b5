"""Everything runtara-core needs from aioquic beyond its public API, in one place.

aioquic has no setting for the number of concurrent streams a peer may open,
no way to refuse a connection before its handshake, no peer address and no
peer certificate on a connection, and it keeps TLS buffers and handshake
timers that we must reach to free or cancel. Each of those reaches into aioquic's private attributes
here, and only here; ``tests/unit/test_aioquic_adapter.py`` checks every one
of them against the installed aioquic, so an upgrade that changes them fails
loudly there instead of misbehaving at run time.

(Subclasses of :class:`~aioquic.asyncio.protocol.QuicConnectionProtocol` use
``self._quic``, the connection they wrap: that is aioquic's documented way of
extending the protocol, and its own examples do it.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.buffer import Buffer
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicErrorCode
from cryptography import x509


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


def peer_address(connection: QuicConnection) -> tuple[str, int] | None:
    paths = connection._network_paths
    return paths[0].addr[:2] if paths else None


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


class AdmittingServer(QuicServer):
    """aioquic's server endpoint, asking ``admit`` about every new connection.

    ``admit(protocol, address)`` returns None to accept, or the reason to
    refuse: the connection is then closed at once with CONNECTION_REFUSED, so
    the client sees a clear error instead of a timeout.
    """

    def __init__(self, *, admit: Callable[[QuicConnectionProtocol, str], str | None], **kwargs):
        super().__init__(**kwargs)
        self._admit = admit
        self._address = "?"
        inner = self._create_protocol

        def create(connection: QuicConnection, stream_handler=None):
            protocol = inner(connection, stream_handler=stream_handler)
            refusal = self._admit(protocol, self._address)
            if refusal is not None:
                connection.close(error_code=QuicErrorCode.CONNECTION_REFUSED, reason_phrase=refusal)
            return protocol

        self._create_protocol = create

    def datagram_received(self, data: bytes | str, addr) -> None:
        # aioquic creates a new connection's protocol while handling its first
        # datagram; remember whose it is.
        self._address = f"{addr[0]}:{addr[1]}"
        super().datagram_received(data, addr)

    @property
    def transport(self) -> asyncio.DatagramTransport | None:
        return self._transport


def server_transport(server: QuicServer) -> asyncio.DatagramTransport | None:
    return server._transport
