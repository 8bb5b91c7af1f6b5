"""An asyncio QUIC connection to a runtara server.

Each request opens a new bidirectional stream, writes one type-1 frame and
FIN; a reply is one frame, as upstream. :class:`Stream` exposes the raw
stream for callers that need to send arbitrary bytes.

Who the server is can be checked two ways when connecting: its certificate
verified against certificate authorities (``verify``, ``cafile``), or pinned
by its SHA-256 fingerprint (``fingerprint``). Nothing is sent on a connection
before its checks passed.

A stateless reset from the server (it restarted and no longer knows the
connection) closes the connection at once: its requests fail with
ConnectionLost instead of waiting for the idle timeout. A reset only answers
a packet, and a client whose request the server acknowledged before it died
has nothing to send, so while a request waits without any reply data the
client pings the server, after 1 s and then each time the wait has doubled.
"""

from __future__ import annotations

import asyncio
import socket
import ssl

from aioquic import tls
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicErrorCode
from cryptography.hazmat.primitives import hashes
from google.protobuf.message import DecodeError, Message

from runtara import aioquic_adapter, config, errors, logging_setup
from runtara.limits import MiB
from runtara.protocol import framing

PROBE_AFTER = 1.0
"""Seconds a request waits without reply data before the client first pings the server."""


class CertificateRejected(errors.ConnectFailed):
    """The server's certificate did not pass the check asked for: it does not
    verify against the certificate authorities, or its fingerprint is not the
    pinned one. Nothing was sent to that server."""


_CERTIFICATE_ALERTS = frozenset(
    QuicErrorCode.CRYPTO_ERROR + alert
    for alert in (
        tls.AlertDescription.bad_certificate,
        tls.AlertDescription.unsupported_certificate,
        tls.AlertDescription.certificate_revoked,
        tls.AlertDescription.certificate_expired,
        tls.AlertDescription.certificate_unknown,
        tls.AlertDescription.unknown_ca,
    )
)
"""Connection-close codes of a handshake ended by a certificate check (a TLS
alert is sent as CRYPTO_ERROR plus the alert's number)."""


class _StreamState:
    __slots__ = ("data", "ended", "reset_code", "stop_code", "changed")

    def __init__(self) -> None:
        self.data = bytearray()
        self.ended = False
        self.reset_code: int | None = None
        self.stop_code: int | None = None
        self.changed = asyncio.Event()


class _ClientProtocol(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.streams: dict[int, _StreamState] = {}
        self.terminated: events.ConnectionTerminated | None = None
        self.socket_error: OSError | None = None
        self._progress_at = 0.0
        """When a request was last sent or reply data last came."""
        self._probe_after = PROBE_AFTER
        self._probe_timer: asyncio.TimerHandle | None = None

    def datagram_received(self, data: bytes, addr) -> None:
        # aioquic's client does not recognise a stateless reset: without this, a
        # connection to a server that restarted would last until its idle timeout.
        if not aioquic_adapter.end_on_stateless_reset(self, data):
            super().datagram_received(data, addr)

    def error_received(self, exc: OSError) -> None:
        # The socket is connected, so the kernel reports ICMP errors here: a
        # closed port during the handshake fails at once instead of timing out.
        if aioquic_adapter.fail_handshake(self, ConnectionError(str(exc))):
            self.socket_error = exc

    def send(self, stream_id: int, data: bytes, end: bool) -> None:
        self._quic.send_stream_data(stream_id, data, end_stream=end)
        self.transmit()
        self._progressed()
        if self._probe_timer is None:
            self._probe_timer = self._loop.call_later(PROBE_AFTER, self._probe)

    def _progressed(self) -> None:
        self._progress_at = self._loop.time()
        self._probe_after = PROBE_AFTER

    def _probe(self) -> None:
        """While requests wait for replies, ping a server that sent none for a while:
        a live one acknowledges, a restarted one answers with a stateless reset."""
        self._probe_timer = None
        if self.terminated is not None or not self.streams or self._transport.is_closing():
            return
        waited = self._loop.time() - self._progress_at
        if waited >= self._probe_after:
            self._quic.send_ping(0)
            self.transmit()
            self._probe_after = 2 * waited
        self._probe_timer = self._loop.call_at(self._progress_at + self._probe_after, self._probe)

    def reset(self, stream_id: int, error_code: int) -> None:
        self._quic.reset_stream(stream_id, error_code)
        self.transmit()

    def stop(self, stream_id: int, error_code: int) -> None:
        self._quic.stop_stream(stream_id, error_code)
        self.transmit()

    def next_stream_id(self) -> int:
        return self._quic.get_next_available_stream_id()

    def peer_fingerprint(self) -> str | None:
        """The SHA-256 fingerprint of the server's certificate, colon-separated
        hex as the server logs it; None before the certificate arrived."""
        certificate = aioquic_adapter.peer_certificate(self._quic)
        if certificate is None:
            return None
        return config.fingerprint(certificate.fingerprint(hashes.SHA256()).hex())

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.StreamDataReceived):
            self._progressed()
            state = self.streams.get(event.stream_id)
            if state is not None:
                state.data += event.data
                state.ended = state.ended or event.end_stream
                state.changed.set()
        elif isinstance(event, events.StreamReset):
            state = self.streams.get(event.stream_id)
            if state is not None:
                state.reset_code = event.error_code
                state.changed.set()
        elif isinstance(event, events.StopSendingReceived):
            state = self.streams.get(event.stream_id)
            if state is not None:
                state.stop_code = event.error_code
                state.changed.set()
        elif isinstance(event, events.ConnectionTerminated):
            self.terminated = event
            if self._probe_timer is not None:
                self._probe_timer.cancel()
                self._probe_timer = None
            for state in self.streams.values():
                state.changed.set()


class Stream:
    """One bidirectional stream of a :class:`Connection`."""

    def __init__(self, connection: Connection, stream_id: int) -> None:
        self._connection = connection
        self._protocol = connection._protocol
        self.stream_id = stream_id
        self._state = _StreamState()
        self._protocol.streams[stream_id] = self._state

    def send(self, data: bytes, *, end: bool = False) -> None:
        self._protocol.send(self.stream_id, data, end)

    def reset(self, error_code: int = 0) -> None:
        """Abandon the sending side (RESET_STREAM)."""
        self._protocol.reset(self.stream_id, error_code)

    def stop_reading(self, error_code: int = 0) -> None:
        """Tell the server we will not read the reply (STOP_SENDING)."""
        self._protocol.stop(self.stream_id, error_code)
        self.close()

    @property
    def reset_code(self) -> int | None:
        return self._state.reset_code

    @property
    def stop_code(self) -> int | None:
        return self._state.stop_code

    async def read_frame(self) -> framing.Frame | None:
        """The next frame of the reply, or None if the server finished the stream
        without sending one. Raises ConnectionLost on reset or a closed connection."""
        decoder = framing.FrameDecoder()
        while True:
            frames = decoder.feed(self._take())
            if frames:
                return frames[0]
            if self._state.ended:
                if decoder.buffered:
                    raise errors.BadResponse(
                        f"reply ended inside a frame ({decoder.buffered} bytes)"
                    )
                return None
            await self._wait()

    async def read_to_end(self) -> bytes:
        """Everything the server sends until its FIN."""
        chunks = bytearray()
        while True:
            chunks += self._take()
            if self._state.ended:
                return bytes(chunks)
            await self._wait()

    def close(self) -> None:
        self._protocol.streams.pop(self.stream_id, None)

    def _take(self) -> bytes:
        data = bytes(self._state.data)
        self._state.data.clear()
        return data

    async def _wait(self) -> None:
        state = self._state
        if state.reset_code is not None:
            raise errors.ConnectionLost(f"the server reset the stream (code {state.reset_code})")
        if self._protocol.terminated is not None:
            raise errors.ConnectionLost(_describe(self._protocol.terminated))
        state.changed.clear()
        await state.changed.wait()


def _describe(event: events.ConnectionTerminated) -> str:
    reason = f": {event.reason_phrase}" if event.reason_phrase else ""
    return f"connection closed (code {event.error_code}){reason}"


class Connection:
    """A client connection; open it with :meth:`open`."""

    def __init__(self, protocol: _ClientProtocol, transport: asyncio.DatagramTransport) -> None:
        self._protocol = protocol
        self._transport = transport

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        server_name: str = "localhost",
        verify: bool = False,
        cafile: str | None = None,
        fingerprint: str | None = None,
        timeout: float = 10.0,
        idle_timeout: float = 30.0,
    ) -> Connection:
        """Connect and finish the handshake within ``timeout``.

        ``verify`` checks that the server's certificate is issued for
        ``server_name`` by an authority of ``cafile`` (without it, the system's);
        ``fingerprint`` (as :func:`runtara.config.fingerprint` returns it) pins
        the certificate, with or without ``verify``. Raises CertificateRejected
        when a check fails, ConnectFailed when there is no connection; a
        cancelled open leaves nothing behind.
        """
        logging_setup.quiet_aioquic_for_clients()
        configuration = QuicConfiguration(
            is_client=True,
            alpn_protocols=None,
            server_name=server_name,
            idle_timeout=idle_timeout,
            max_data=64 * MiB,
            max_stream_data=16 * MiB,
            verify_mode=ssl.CERT_REQUIRED if verify else ssl.CERT_NONE,
        )
        if cafile:
            configuration.load_verify_locations(cafile)
        loop = asyncio.get_running_loop()
        try:
            family, _, _, _, address = (await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM))[
                0
            ]
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: _ClientProtocol(QuicConnection(configuration=configuration)),
                family=family,
                remote_addr=address,
            )
        except OSError as error:
            raise errors.ConnectFailed(f"cannot connect to {host}:{port}: {error}") from None
        self = cls(protocol, transport)
        try:
            protocol.connect(address)
            await asyncio.wait_for(protocol.wait_connected(), timeout)
        except asyncio.TimeoutError:
            self._abort()
            raise errors.ConnectFailed(
                f"no QUIC handshake with {host}:{port} within {timeout}s"
            ) from None
        except ConnectionError:
            terminated = protocol.terminated
            self._abort()
            if verify and terminated is not None and terminated.error_code in _CERTIFICATE_ALERTS:
                raise CertificateRejected(
                    f"the certificate of {host}:{port} does not verify"
                    + (f" against {cafile}" if cafile else "")
                    + f": {terminated.reason_phrase or 'refused'}"
                ) from None
            if protocol.socket_error is not None:
                reason = protocol.socket_error.strerror or str(protocol.socket_error)
            elif terminated is not None:
                reason = _describe(terminated)
            else:
                reason = "refused"
            raise errors.ConnectFailed(f"cannot connect to {host}:{port}: {reason}") from None
        except BaseException:  # cancelled (Ctrl-C in a blocking caller): leave nothing pending
            self._abort()
            raise
        if fingerprint is not None:
            presented = protocol.peer_fingerprint()
            if presented != fingerprint:
                self._abort()
                raise CertificateRejected(
                    f"the certificate of {host}:{port} has the SHA-256 fingerprint "
                    f"{presented}, not the pinned {fingerprint}"
                )
        return self

    def _abort(self) -> None:
        """Give up on a connection: its handshake never finished, or its server
        is not trusted."""
        aioquic_adapter.abort_handshake(self._protocol)
        self._transport.close()

    @property
    def closed(self) -> bool:
        return self._protocol.terminated is not None

    def open_stream(self) -> Stream:
        if self.closed:
            raise errors.ConnectionLost("the connection is closed")
        stream_id = self._protocol.next_stream_id()
        return Stream(self, stream_id)

    async def call(
        self, request: Message, response_type: type[Message], *, timeout: float | None = None
    ):
        """Send one request frame, FIN, and decode the one reply frame."""
        data = _request_frame(request)
        stream = self.open_stream()
        try:
            stream.send(data, end=True)
            frame = await asyncio.wait_for(stream.read_frame(), timeout)
        except asyncio.TimeoutError:
            raise errors.RequestTimeout(f"no reply within {timeout}s") from None
        except framing.FrameError as error:
            raise errors.BadResponse(f"invalid reply frame: {error}") from None
        finally:
            stream.close()
        if frame is None:
            raise errors.ConnectionLost("the server finished the stream without a reply")
        try:
            return response_type.FromString(frame.payload)
        except DecodeError as error:
            raise errors.BadResponse(f"invalid reply message: {error}") from None

    async def call_no_reply(self, request: Message, *, timeout: float | None = None) -> None:
        """Send a request whose answer is an empty FIN, and wait for that FIN."""
        data = _request_frame(request)
        stream = self.open_stream()
        try:
            stream.send(data, end=True)
            data = await asyncio.wait_for(stream.read_to_end(), timeout)
        except asyncio.TimeoutError:
            raise errors.RequestTimeout(f"no end of stream within {timeout}s") from None
        finally:
            stream.close()
        if data:
            raise errors.BadResponse(f"expected no reply, got {len(data)} bytes")

    def send(self, request: Message) -> None:
        """Fire and forget: write the request and FIN, and never read the stream."""
        data = _request_frame(request)
        stream = self.open_stream()
        stream.send(data, end=True)
        stream.stop_reading()

    async def close(self, reason: str = "client closing", *, wait: float = 2.0) -> None:
        """Close with application code 0; wait up to ``wait`` seconds for the close to finish."""
        if self._protocol.terminated is None:
            self._protocol.close(error_code=0, reason_phrase=reason)
            try:
                await asyncio.wait_for(self._protocol.wait_closed(), wait)
            except asyncio.TimeoutError:
                pass
        self._transport.close()


def _request_frame(request: Message) -> bytes:
    try:
        return framing.encode_frame(request.SerializeToString(), framing.MessageType.REQUEST)
    except framing.FrameTooLarge as error:
        raise errors.RequestTooLarge(f"the request was not sent: {error}") from None
