"""The QUIC layer: connections that move request and reply bytes.

Runs only on the event-loop thread (aioquic objects are not thread-safe). A
connection feeds stream data to :class:`runtara.protocol.streams.RequestStreams`
and hands each whole request frame to its :class:`RequestSink`; it writes
replies back when told to. It owns no business rule.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.buffer import Buffer
from aioquic.quic import events
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicErrorCode

from runtara.protocol import streams

logger = logging.getLogger(__name__)

STREAM_REJECTED = 0x101
"""Application error code of STOP_SENDING for a stream whose bytes are not a valid frame."""
STREAM_OVERLOADED = 0x102
"""Application error code of RESET_STREAM when a no-reply request is refused under overload."""
CONNECTION_EVICTED = 0x103
"""Application error code of CONNECTION_CLOSE for the connection holding the most
unfinished-request bytes when the server-wide budget runs out."""
STREAM_FAILED = 0x104
"""Application error code of RESET_STREAM when a request failed in a way the
server could not turn into a reply (a bug): the request is not acknowledged."""


class RequestSink(Protocol):
    def request_received(
        self, connection: InstanceConnection, stream_id: int, payload: bytes
    ) -> None: ...

    def connection_closed(self, connection: InstanceConnection) -> None: ...

    def buffers_exhausted(self) -> None: ...


def _is_bidirectional(stream_id: int) -> bool:
    return stream_id & 2 == 0


class InstanceConnection(QuicConnectionProtocol):
    """One client connection; requests go to the sink, replies come back by stream id."""

    def __init__(
        self,
        quic: QuicConnection,
        stream_handler: object = None,
        *,
        sink: RequestSink,
        max_buffered: int,
        shared_buffer: streams.ByteBudget | None,
        keep_alive: float,
    ) -> None:
        super().__init__(quic)
        self._sink = sink
        self._requests = streams.RequestStreams(max_buffered=max_buffered, shared=shared_buffer)
        self._keep_alive = keep_alive
        self._keep_alive_timer: asyncio.TimerHandle | None = None
        # Streams whose request went to the sink and has not been answered yet,
        # and those of them the client gave up on (reset or STOP_SENDING).
        self._awaiting_reply: set[int] = set()
        self._abandoned: set[int] = set()
        self.established = False
        self.closed = False

    @property
    def buffered(self) -> int:
        """Bytes charged to the budgets for this connection's unfinished requests."""
        return self._requests.buffered

    def evict(self) -> None:
        """Close the connection at once and release everything it holds."""
        logger.warning(
            "closing the connection from %s: it holds %d bytes of unfinished requests "
            "and the server's buffer budget is exhausted",
            self.peer,
            self._requests.buffered,
        )
        self._requests.clear()
        self.close(error_code=CONNECTION_EVICTED, reason_phrase="too many unfinished requests")

    @property
    def peer(self) -> str:
        path = self._quic._network_paths[0] if self._quic._network_paths else None
        return f"{path.addr[0]}:{path.addr[1]}" if path is not None else "?"

    def replies_unacknowledged(self) -> bool:
        """Some reply written to a stream has not been acknowledged by the client yet."""
        if self.closed:
            return False
        return any(
            stream.sender._buffer_fin is not None and not stream.sender.is_finished
            for stream in self._quic._streams.values()
        )

    def is_abandoned(self, stream_id: int) -> bool:
        """The client reset the stream, stopped reading it, or the connection is gone."""
        return self.closed or stream_id in self._abandoned

    def send_reply(self, stream_id: int, frame: bytes | None) -> None:
        """Write ``frame`` (or nothing) and FIN. A client that stopped reading is not an error."""
        self._forget(stream_id)
        if self.closed:
            return
        try:
            self._quic.send_stream_data(stream_id, frame or b"", end_stream=True)
        except (ValueError, RuntimeError) as error:
            logger.debug("reply on stream %d dropped: %s", stream_id, error)
            return
        self._transmit_soon()

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        self._forget(stream_id)
        if self.closed:
            return
        try:
            self._quic.reset_stream(stream_id, error_code)
        except (ValueError, RuntimeError):
            return
        self._transmit_soon()

    def _forget(self, stream_id: int) -> None:
        self._awaiting_reply.discard(stream_id)
        self._abandoned.discard(stream_id)

    def reject_stream(self, stream_id: int) -> None:
        """End a stream that carried no valid request: empty FIN, and ask the client to stop."""
        try:
            self._quic.stop_stream(stream_id, STREAM_REJECTED)
        except ValueError:
            pass
        self.send_reply(stream_id, None)

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.StreamDataReceived):
            self._stream_data(event)
        elif isinstance(event, events.StreamReset):
            self._requests.stream_reset(event.stream_id)
            if event.stream_id in self._awaiting_reply:
                self._mark_abandoned(event.stream_id)
            else:
                # Nothing will ever be written on it: end our side too, or the
                # stream never completes and its credit is never given back.
                self.reset_stream(event.stream_id, STREAM_REJECTED)
        elif isinstance(event, events.StopSendingReceived):
            self._mark_abandoned(event.stream_id)
        elif isinstance(event, events.HandshakeCompleted):
            self.established = True
            self._release_handshake_buffers()
            self._schedule_keep_alive()
        elif isinstance(event, events.ConnectionTerminated):
            self._terminated(event)

    def _mark_abandoned(self, stream_id: int) -> None:
        if stream_id in self._awaiting_reply:
            self._abandoned.add(stream_id)

    def _release_handshake_buffers(self) -> None:
        """Free the TLS output buffers once the handshake is done.

        aioquic keeps a 16 KiB buffer per epoch for the connection's whole life.
        A server's handshake is confirmed when it completes and the Initial and
        Handshake keys are discarded then; after it, a QUIC server's TLS writes
        nothing (we issue no session tickets), so none of the three buffers is
        written again. Freeing them saves 41 KiB per connection.
        """
        buffers = self._quic._crypto_buffers
        for epoch in list(buffers):
            buffers[epoch] = Buffer(capacity=0)

    def _stream_data(self, event: events.StreamDataReceived) -> None:
        stream_id = event.stream_id
        if not _is_bidirectional(stream_id):
            # The protocol never uses unidirectional streams: ignore them.
            if event.data or not event.end_stream:
                try:
                    self._quic.stop_stream(stream_id, STREAM_REJECTED)
                except ValueError:
                    pass
            return
        outcome = self._requests.data_received(
            stream_id, event.data, event.end_stream, self._loop.time()
        )
        if isinstance(outcome, streams.RequestReceived):
            self._awaiting_reply.add(stream_id)
            self._sink.request_received(self, stream_id, outcome.frame.payload)
        elif isinstance(outcome, streams.StreamFailed):
            logger.warning(
                "bad frame from %s on stream %d: %s", self.peer, stream_id, outcome.error
            )
            self.reject_stream(stream_id)
            if isinstance(outcome.error, streams.BufferLimitExceeded) and outcome.error.server_wide:
                self._sink.buffers_exhausted()

    def expire_requests(self, timeout: float) -> None:
        """End the streams whose request did not arrive whole within ``timeout`` seconds."""
        if self.closed:
            return
        for stream_id in self._requests.expire(self._loop.time(), timeout):
            logger.warning(
                "request from %s on stream %d did not arrive within %gs; dropped",
                self.peer,
                stream_id,
                timeout,
            )
            self.reject_stream(stream_id)

    def _terminated(self, event: events.ConnectionTerminated) -> None:
        if self.closed:
            return
        self.closed = True
        self._requests.clear()
        self._awaiting_reply.clear()
        self._abandoned.clear()
        if self._keep_alive_timer is not None:
            self._keep_alive_timer.cancel()
        logger.debug(
            "connection from %s closed: code %s %s",
            self.peer,
            event.error_code,
            event.reason_phrase,
        )
        self._sink.connection_closed(self)

    def _schedule_keep_alive(self) -> None:
        if self._keep_alive > 0 and not self.closed:
            self._keep_alive_timer = self._loop.call_later(self._keep_alive, self._ping)

    def _ping(self) -> None:
        if self.closed:
            return
        self._quic.send_ping(0)
        self.transmit()
        self._schedule_keep_alive()


class Endpoint(QuicServer):
    """aioquic's server, with admission of new connections.

    ``admit`` is asked once per new connection; a refused one is closed at once
    with CONNECTION_REFUSED, so the client sees a clear error instead of a
    timeout.
    """

    def __init__(self, *, admit, **kwargs) -> None:
        super().__init__(**kwargs)
        self._admit = admit
        inner = self._create_protocol

        def create(connection: QuicConnection, stream_handler=None):
            protocol = inner(connection, stream_handler=stream_handler)
            refusal = self._admit(protocol)
            if refusal is not None:
                connection.close(error_code=QuicErrorCode.CONNECTION_REFUSED, reason_phrase=refusal)
            return protocol

        self._create_protocol = create

    @property
    def transport(self) -> asyncio.DatagramTransport | None:
        return self._transport
