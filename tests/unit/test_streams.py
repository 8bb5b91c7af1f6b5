from __future__ import annotations

import struct

from runtara.protocol import framing
from runtara.protocol.streams import (
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
    assert streams.buffered == 0


def test_reset_drops_the_buffer():
    streams = RequestStreams()
    streams.data_received(0, frame(b"x" * 100)[:50], False)
    assert streams.buffered == 44  # payload bytes; the header is parsed and dropped
    streams.stream_reset(0)
    assert streams.buffered == 0 and streams.open_streams == 0


def test_buffered_bytes_per_connection_are_capped():
    streams = RequestStreams(max_buffered=1000)
    assert streams.data_received(0, frame(b"x" * 2000)[:600], False) is None
    event = streams.data_received(4, frame(b"y" * 2000)[:600], False)
    assert isinstance(event, StreamFailed) and isinstance(event.error, BufferLimitExceeded)
    assert streams.buffered == 594
    # the first stream can still grow up to the cap
    rest = frame(b"x" * 2000)[600:]
    streams.data_received(0, rest[:300], False)
    assert streams.buffered == 894


def test_a_shared_budget_caps_all_connections_together():
    budget = ByteBudget(1000)
    first = RequestStreams(shared=budget)
    second = RequestStreams(shared=budget)
    assert first.data_received(0, frame(b"x" * 2000)[:706], False) is None
    assert budget.used == 700
    event = second.data_received(0, frame(b"y" * 2000)[:400], False)
    assert isinstance(event, StreamFailed) and "the server" in str(event.error)
    first.stream_reset(0)
    assert budget.used == 0
    assert second.data_received(8, frame(b"y" * 10), False).frame.payload == b"y" * 10
    second.data_received(4, frame(b"z" * 100)[:50], False)
    second.clear()
    assert budget.used == 0
