from __future__ import annotations

import struct
import tracemalloc

import pytest

from runtara.protocol import framing
from runtara.protocol.framing import FrameDecoder, MessageType, encode_frame


def frame(payload: bytes, message_type: int = 1) -> bytes:
    return struct.pack(">IH", len(payload), message_type) + payload


def test_encode_layout_is_length_then_type_then_payload():
    assert encode_frame(b"abc", MessageType.REQUEST) == b"\x00\x00\x00\x03\x00\x01abc"
    assert encode_frame(b"") == b"\x00\x00\x00\x00\x00\x02"


@pytest.mark.parametrize("payload", [b"", b"x", bytes(range(256)) * 40])
def test_a_frame_fed_one_byte_at_a_time_arrives_once_whole(payload):
    decoder = FrameDecoder()
    data = frame(payload)
    got = []
    for index in range(len(data)):
        got += decoder.feed(data[index : index + 1])
        if index < len(data) - 1:
            assert got == []
    assert got == [framing.Frame(MessageType.REQUEST, payload)]
    decoder.end_of_stream()


def test_several_frames_in_one_chunk_are_all_returned_in_order():
    decoder = FrameDecoder()
    data = frame(b"one") + frame(b"", 2) + frame(b"three", 6)
    assert [(f.message_type, f.payload) for f in decoder.feed(data)] == [
        (MessageType.REQUEST, b"one"),
        (MessageType.RESPONSE, b""),
        (MessageType.ERROR, b"three"),
    ]


@pytest.mark.parametrize("split", range(1, 20))
def test_frames_split_anywhere_across_chunks(split):
    data = frame(b"first-payload") + frame(b"second")
    decoder = FrameDecoder()
    payloads = [f.payload for f in decoder.feed(data[:split]) + decoder.feed(data[split:])]
    assert payloads == [b"first-payload", b"second"]


@pytest.mark.parametrize("message_type", [0, 7, 65535])
def test_unknown_message_type_is_rejected(message_type):
    with pytest.raises(framing.UnknownMessageType):
        FrameDecoder().feed(frame(b"x", message_type))


def test_type_is_checked_before_length():
    header = struct.pack(">IH", framing.MAX_FRAME_SIZE + 1, 9)
    with pytest.raises(framing.UnknownMessageType):
        FrameDecoder().feed(header)


def test_exactly_64_mib_is_allowed_one_more_byte_is_not():
    FrameDecoder().feed(struct.pack(">IH", framing.MAX_FRAME_SIZE, 1))
    with pytest.raises(framing.FrameTooLarge):
        FrameDecoder().feed(struct.pack(">IH", framing.MAX_FRAME_SIZE + 1, 1))


def test_oversized_length_is_rejected_before_anything_is_allocated():
    decoder = FrameDecoder()
    tracemalloc.start()
    try:
        with pytest.raises(framing.FrameTooLarge):
            decoder.feed(struct.pack(">IH", 0xFFFFFFFF, 1) + b"abc")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


def test_encoder_refuses_payloads_above_the_limit():
    with pytest.raises(framing.FrameTooLarge):
        encode_frame(bytes(framing.MAX_FRAME_SIZE + 1))


@pytest.mark.parametrize("data", [b"\x00\x00", frame(b"abcdef")[:-2]])
def test_a_stream_that_ends_inside_a_frame_is_truncated(data):
    decoder = FrameDecoder()
    assert decoder.feed(data) == []
    with pytest.raises(framing.TruncatedFrame):
        decoder.end_of_stream()


def test_end_of_stream_between_frames_is_fine():
    decoder = FrameDecoder()
    decoder.feed(frame(b"x"))
    decoder.end_of_stream()
