"""Reassembly of one request frame per QUIC stream.

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
        self.server_wide = scope == "the server"


Event = RequestReceived | StreamFailed


class ByteBudget:
    """A byte count shared by many connections, with a ceiling."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def has_room(self, size: int) -> bool:
        return self.used + size <= self.limit


STREAM_OVERHEAD = 2048
"""Bytes charged to the budgets for every stream the connection still tracks,
besides its data: what a QUIC stream and its decoder cost the server (about
1.6 KiB measured), so that the byte budgets also bound how many streams a
client can keep open."""


@attrs.define
class _Pending:
    """A request whose frame has not arrived whole yet."""

    decoder: framing.FrameDecoder
    started: float
    charge: int = 0


class RequestStreams:
    """Per-connection buffers of requests in progress, bounded in bytes and time.

    ``max_buffered`` caps the bytes charged for unfinished requests across all
    streams of the connection, and ``shared`` (if given) across every
    connection of the server: each tracked stream costs its buffered bytes
    plus :data:`STREAM_OVERHEAD`. The stream that would cross either cap fails
    with :class:`BufferLimitExceeded`. :meth:`expire` gives up on requests that
    take too long to arrive.
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
        self._pending: dict[int, _Pending] = {}
        # Streams already answered (or rejected) whose client has not finished
        # sending: later bytes are ignored until its FIN or reset.
        self._answered: set[int] = set()
        self._buffered = 0

    @property
    def buffered(self) -> int:
        """Bytes charged: unfinished requests' data plus the per-stream overhead."""
        return self._buffered

    @property
    def open_streams(self) -> int:
        """Requests that have not arrived whole, failed or expired yet."""
        return len(self._pending)

    def data_received(
        self, stream_id: int, data: bytes, end_stream: bool, now: float = 0.0
    ) -> Event | None:
        """Feed the bytes of one STREAM frame; return what, if anything, is now known."""
        if stream_id in self._answered:
            if end_stream:
                self._answered.discard(stream_id)
                self._account(-STREAM_OVERHEAD)
            return None
        pending = self._pending.get(stream_id)
        decoder = pending.decoder if pending else framing.FrameDecoder(self._max_payload)
        try:
            growth = len(data) + (0 if pending else STREAM_OVERHEAD)
            if self._buffered + growth > self._max_buffered:
                raise BufferLimitExceeded("the connection", self._max_buffered)
            if self._shared is not None and not self._shared.has_room(growth):
                raise BufferLimitExceeded("the server", self._shared.limit)
            # One request per stream: whatever follows its frame is ignored,
            # even in the same chunk, as upstream does.
            frames = decoder.feed(data, limit=1)
            if not frames and end_stream:
                decoder.end_of_stream()
                raise framing.TruncatedFrame(0, None)
        except framing.FrameError as error:
            self._settle(stream_id, end_stream)
            return StreamFailed(stream_id, error)
        if frames:
            self._settle(stream_id, end_stream)
            return RequestReceived(stream_id, frames[0])
        if pending is None:
            pending = self._pending[stream_id] = _Pending(decoder, now)
        charge = decoder.buffered + STREAM_OVERHEAD
        self._account(charge - pending.charge)
        pending.charge = charge
        return None

    def stream_reset(self, stream_id: int) -> None:
        """The client abandoned the stream: drop whatever it sent."""
        pending = self._pending.pop(stream_id, None)
        if pending is not None:
            self._account(-pending.charge)
        if stream_id in self._answered:
            self._answered.discard(stream_id)
            self._account(-STREAM_OVERHEAD)

    def expire(self, now: float, timeout: float) -> list[int]:
        """Give up on requests started ``timeout`` seconds or more before ``now``;
        return their stream ids (answer them with an empty FIN)."""
        late = [sid for sid, pending in self._pending.items() if now - pending.started >= timeout]
        for stream_id in late:
            self._settle(stream_id, end_stream=False)
        return late

    def clear(self) -> None:
        """The connection is gone: drop every buffer."""
        self._pending.clear()
        self._answered.clear()
        self._account(-self._buffered)

    def _settle(self, stream_id: int, end_stream: bool) -> None:
        """The stream is answered: release its data, keep its overhead until its FIN."""
        pending = self._pending.pop(stream_id, None)
        charge = pending.charge if pending else 0
        if end_stream:
            self._account(-charge)
        else:
            self._answered.add(stream_id)
            self._account(STREAM_OVERHEAD - charge)

    def _account(self, delta: int) -> None:
        self._buffered += delta
        if self._shared is not None:
            self._shared.used += delta
