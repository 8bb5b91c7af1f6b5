"""Reassembly of one request frame per QUIC stream (upstream spec section 1.3).

Each client-initiated bidirectional stream carries exactly one request frame.
:class:`RequestStreams` takes the stream events of one connection and tells the
caller when a stream holds a whole frame (without waiting for the client's FIN)
or can never hold one. Bytes after the first frame are ignored, as upstream does.
"""

from __future__ import annotations

import attrs

from runtara.protocol import framing


@attrs.frozen
class RequestReceived:
    """A stream delivered one whole request frame."""

    stream_id: int
    frame: framing.Frame


@attrs.frozen
class StreamFailed:
    """A stream can never deliver a valid frame; answer it with an empty FIN."""

    stream_id: int
    error: framing.FrameError


class BufferLimitExceeded(framing.FrameError):
    def __init__(self, scope: str, limit: int) -> None:
        super().__init__(f"{scope} already buffers {limit} bytes of unfinished requests")


Event = RequestReceived | StreamFailed


class ByteBudget:
    """A byte count shared by many connections, with a ceiling."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def has_room(self, size: int) -> bool:
        return self.used + size <= self.limit


class RequestStreams:
    """Per-connection buffers of requests in progress, bounded in bytes.

    ``max_buffered`` caps the bytes held for unfinished frames across all
    streams of the connection, and ``shared`` (if given) across every
    connection of the server; the stream that would cross either fails with
    :class:`BufferLimitExceeded`.
    """

    def __init__(
        self,
        *,
        max_payload: int = framing.MAX_FRAME_SIZE,
        max_buffered: int = 256 * 1024 * 1024,
        shared: ByteBudget | None = None,
    ) -> None:
        self._max_payload = max_payload
        self._max_buffered = max_buffered
        self._shared = shared
        # None marks a stream whose frame was delivered or rejected but whose
        # client has not finished sending yet.
        self._decoders: dict[int, framing.FrameDecoder | None] = {}
        self._buffered = 0

    @property
    def buffered(self) -> int:
        """Bytes held for frames that have not arrived whole yet."""
        return self._buffered

    @property
    def open_streams(self) -> int:
        """Streams that have not delivered or failed yet."""
        return sum(1 for decoder in self._decoders.values() if decoder is not None)

    def data_received(self, stream_id: int, data: bytes, end_stream: bool) -> Event | None:
        """Feed the bytes of one STREAM frame; return what, if anything, is now known."""
        if stream_id in self._decoders:
            decoder = self._decoders[stream_id]
            if decoder is None:  # already answered: later bytes are ignored
                if end_stream:
                    del self._decoders[stream_id]
                return None
        else:
            decoder = framing.FrameDecoder(self._max_payload)
        before = decoder.buffered
        try:
            if self._buffered + len(data) > self._max_buffered:
                raise BufferLimitExceeded("the connection", self._max_buffered)
            if self._shared is not None and not self._shared.has_room(len(data)):
                raise BufferLimitExceeded("the server", self._shared.limit)
            frames = decoder.feed(data)
            if not frames and end_stream:
                decoder.end_of_stream()
                raise framing.TruncatedFrame(0, None)
        except framing.FrameError as error:
            self._account(-before)
            self._finish(stream_id, end_stream)
            return StreamFailed(stream_id, error)
        if frames:
            self._account(-before)
            self._finish(stream_id, end_stream)
            return RequestReceived(stream_id, frames[0])
        self._account(decoder.buffered - before)
        self._decoders[stream_id] = decoder
        return None

    def stream_reset(self, stream_id: int) -> None:
        """The client abandoned the stream: drop whatever it sent."""
        decoder = self._decoders.pop(stream_id, None)
        if decoder is not None:
            self._account(-decoder.buffered)

    def clear(self) -> None:
        """The connection is gone: drop every buffer."""
        self._decoders.clear()
        self._account(-self._buffered)

    def _account(self, delta: int) -> None:
        self._buffered += delta
        if self._shared is not None:
            self._shared.used += delta

    def _finish(self, stream_id: int, end_stream: bool) -> None:
        if end_stream:
            self._decoders.pop(stream_id, None)
        else:
            self._decoders[stream_id] = None
