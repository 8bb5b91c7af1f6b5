"""The QUIC layer: connections that move request and reply bytes.

Runs only on the event-loop thread (aioquic objects are not thread-safe). A
connection hands every QUIC event to the server's :class:`~runtara.server.core.ServerCore`
through its :class:`Host`, and carries out the stream actions the core decides
(write a reply, reset, reject, close). It owns no business rule.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic import events
from aioquic.quic.connection import QuicConnection

from runtara import aioquic_adapter
from runtara.protocol import codes

logger = logging.getLogger(__name__)


class Host(Protocol):
    """The server side a connection reports to (the runtime, on the loop thread)."""

    def quic_event(self, connection: ServerConnection, event: events.QuicEvent) -> None: ...


class ServerConnection(QuicConnectionProtocol):
    """One client connection."""

    def __init__(
        self,
        quic: QuicConnection,
        stream_handler: object = None,
        *,
        host: Host,
        keep_alive: float,
    ) -> None:
        super().__init__(quic)
        self._host = host
        self._keep_alive = keep_alive
        self._keep_alive_timer: asyncio.TimerHandle | None = None
        self.closed = False

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.HandshakeCompleted):
            aioquic_adapter.release_handshake_buffers(self._quic)
            self._schedule_keep_alive()
        elif isinstance(event, events.ConnectionTerminated):
            if self.closed:
                return
            self.closed = True
            if self._keep_alive_timer is not None:
                self._keep_alive_timer.cancel()
            logger.debug("connection closed: code %s %s", event.error_code, event.reason_phrase)
        self._host.quic_event(self, event)

    # --- what the core decides ------------------------------------------------

    def send_reply(self, stream_id: int, frame: bytes | None) -> None:
        """Write ``frame`` (or nothing) and FIN. A client that stopped reading is not an error."""
        if self.closed:
            return
        try:
            self._quic.send_stream_data(stream_id, frame or b"", end_stream=True)
        except (ValueError, RuntimeError) as error:
            logger.debug("reply on stream %d dropped: %s", stream_id, error)
            return
        self._transmit_soon()

    def reset_stream(self, stream_id: int, code: int) -> None:
        if self.closed:
            return
        try:
            self._quic.reset_stream(stream_id, code)
        except (ValueError, RuntimeError):
            return
        self._transmit_soon()

    def stop_stream(self, stream_id: int) -> None:
        if self.closed:
            return
        try:
            self._quic.stop_stream(stream_id, codes.STREAM_REJECTED)
        except ValueError:
            return
        self._transmit_soon()

    def reject_stream(self, stream_id: int) -> None:
        """End a stream that carried no valid request: empty FIN, and ask the client to stop."""
        self.stop_stream(stream_id)
        self.send_reply(stream_id, None)

    def replies_unacknowledged(self) -> bool:
        return not self.closed and aioquic_adapter.replies_unacknowledged(self._quic)

    # --- keep-alive -----------------------------------------------------------

    def _schedule_keep_alive(self) -> None:
        if self._keep_alive > 0 and not self.closed:
            self._keep_alive_timer = self._loop.call_later(self._keep_alive, self._ping)

    def _ping(self) -> None:
        if self.closed:
            return
        self._quic.send_ping(0)
        self.transmit()
        self._schedule_keep_alive()
