from __future__ import annotations

import struct

from runtara.protocol import framing
from runtara.protocol.streams import (
    STREAM_OVERHEAD,
    BufferLimitExceeded,
    ByteBudget,
    RequestReceived,
    RequestStreams,
    StreamFailed,
)


def frame(payload: bytes, message_type: int = 1) -> bytes:
    return struct.pack(">IH", len(payload), message_type) + payload


def test_request_is_delivered_when_whole_without_waiting_for_fin():
    streams = RequestStreams()
    data = frame(b"hello")
    assert streams.data_received(0, data[:4], False) is None
    event = streams.data_received(0, data[4:], False)
    assert event == RequestReceived(0, framing.Frame(framing.MessageType.REQUEST, b"hello"))
    # answered, but the client has not finished its side: only the overhead remains
    assert streams.buffered == STREAM_OVERHEAD
    streams.data_received(0, b"", True)
    assert streams.buffered == 0


def test_request_fed_byte_by_byte_on_interleaved_streams():
    streams = RequestStreams()
    a, b = frame(b"alpha"), frame(b"beta!")
    events = []
    for index in range(max(len(a), len(b))):
        for stream_id, data in ((0, a), (4, b)):
            if index < len(data):
                event = streams.data_received(
                    stream_id, data[index : index + 1], index == len(data) - 1
                )
                if event is not None:
                    events.append(event)
    assert sorted((e.stream_id, e.frame.payload) for e in events) == [(0, b"alpha"), (4, b"beta!")]
    assert streams.open_streams == 0


def test_bytes_after_the_first_frame_are_ignored():
    streams = RequestStreams()
    event = streams.data_received(0, frame(b"one") + frame(b"two"), False)
    assert event.frame.payload == b"one"
    assert streams.data_received(0, frame(b"three"), True) is None
    assert streams.open_streams == 0


def test_fin_inside_a_frame_fails_the_stream():
    streams = RequestStreams()
    event = streams.data_received(8, frame(b"abcdef")[:7], True)
    assert isinstance(event, StreamFailed) and isinstance(event.error, framing.TruncatedFrame)
    assert streams.buffered == 0


def test_empty_stream_with_fin_fails():
    event = RequestStreams().data_received(0, b"", True)
    assert isinstance(event, StreamFailed)


def test_oversized_header_fails_before_buffering_and_later_bytes_are_dropped():
    streams = RequestStreams()
    event = streams.data_received(0, struct.pack(">IH", framing.MAX_FRAME_SIZE + 1, 1), False)
    assert isinstance(event.error, framing.FrameTooLarge)
    assert streams.data_received(0, b"x" * 1000, False) is None
    assert streams.buffered == STREAM_OVERHEAD  # nothing of the payload is kept
    streams.stream_reset(0)
    assert streams.buffered == 0


def test_reset_drops_the_buffer():
    streams = RequestStreams()
    streams.data_received(0, frame(b"x" * 100)[:50], False)
    assert streams.buffered == 44 + STREAM_OVERHEAD  # the header is parsed and dropped
    streams.stream_reset(0)
    assert streams.buffered == 0 and streams.open_streams == 0


def test_buffered_bytes_per_connection_are_capped():
    streams = RequestStreams(max_buffered=STREAM_OVERHEAD * 2 + 1000)
    assert streams.data_received(0, frame(b"x" * 2000)[:606], False) is None
    assert streams.buffered == 600 + STREAM_OVERHEAD
    event = streams.data_received(4, frame(b"y" * 2000)[:606], False)
    assert isinstance(event, StreamFailed) and isinstance(event.error, BufferLimitExceeded)
    assert "the connection" in str(event.error)
    assert streams.buffered == 600 + 2 * STREAM_OVERHEAD  # the refused stream's overhead only
    # the first stream can still grow up to the cap
    streams.data_received(0, frame(b"x" * 2000)[606:806], False)
    assert streams.buffered == 800 + 2 * STREAM_OVERHEAD


def test_open_streams_without_data_still_cost_their_overhead():
    streams = RequestStreams(max_buffered=(STREAM_OVERHEAD + 1) * 3)
    for stream_id in (0, 4, 8):
        assert streams.data_received(stream_id, b"\x00", False) is None
    refused = streams.data_received(12, b"\x00", False)
    assert isinstance(refused, StreamFailed)
    assert streams.open_streams == 3


def test_a_shared_budget_caps_all_connections_together():
    budget = ByteBudget(2 * STREAM_OVERHEAD + 1000)
    first = RequestStreams(shared=budget)
    second = RequestStreams(shared=budget)
    assert first.data_received(0, frame(b"x" * 2000)[:706], False) is None
    assert budget.used == 700 + STREAM_OVERHEAD
    event = second.data_received(0, frame(b"y" * 2000)[:1400], False)
    assert isinstance(event, StreamFailed) and "the server" in str(event.error)
    first.stream_reset(0)
    second.stream_reset(0)
    assert budget.used == 0
    assert second.data_received(8, frame(b"y" * 10), True).frame.payload == b"y" * 10
    second.data_received(4, frame(b"z" * 100)[:50], False)
    second.clear()
    assert budget.used == 0


def test_requests_that_take_too_long_expire():
    streams = RequestStreams()
    streams.data_received(0, frame(b"slow" * 100)[:30], False, now=10.0)
    streams.data_received(4, frame(b"late" * 100)[:30], False, now=14.0)
    assert streams.expire(now=15.0, timeout=5.0) == [0]
    assert streams.open_streams == 1
    assert streams.buffered == 24 + 2 * STREAM_OVERHEAD  # stream 0 keeps its overhead until FIN
    assert streams.data_received(0, b"more", False, now=16.0) is None  # ignored now
    streams.data_received(0, b"", True)
    assert streams.expire(now=20.0, timeout=5.0) == [4]
    streams.stream_reset(4)
    assert streams.buffered == 0
