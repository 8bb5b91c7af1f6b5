"""Length-prefixed frames, as upstream writes them.

A frame is a 4-byte big-endian payload length, a 2-byte big-endian message
type, then the protobuf payload. The header is validated (type first, then
length) before any payload byte is buffered, so a hostile length costs nothing.
"""

from __future__ import annotations

import enum
import struct

import attrs

HEADER = struct.Struct(">IH")
HEADER_SIZE = HEADER.size
MAX_FRAME_SIZE = 64 * 1024 * 1024
"""Largest payload accepted or produced: exactly 64 MiB is allowed, one byte more is not."""


class MessageType(enum.IntEnum):
    REQUEST = 1
    RESPONSE = 2
    STREAM_START = 3
    STREAM_DATA = 4
    STREAM_END = 5
    ERROR = 6


class FrameError(Exception):
    """The bytes on a stream are not a valid frame (the peer's fault)."""


class UnknownMessageType(FrameError):
    def __init__(self, value: int) -> None:
        super().__init__(f"unknown message type {value}")


class FrameTooLarge(FrameError):
    def __init__(self, length: int, limit: int = MAX_FRAME_SIZE) -> None:
        super().__init__(f"frame payload of {length} bytes exceeds the limit of {limit} bytes")
        self.length = length


class TruncatedFrame(FrameError):
    def __init__(self, received: int, expected: int | None) -> None:
        if expected is None and received == 0:
            detail = "stream ended before a frame"
        elif expected is None:
            detail = f"stream ended inside the frame header after {received} bytes"
        else:
            detail = f"stream ended after {received} of {expected} payload bytes"
        super().__init__(detail)


@attrs.frozen
class Frame:
    message_type: MessageType
    payload: bytes


def encode_frame(payload: bytes, message_type: MessageType = MessageType.RESPONSE) -> bytes:
    """Return the frame carrying ``payload``; refuses payloads above the limit."""
    if len(payload) > MAX_FRAME_SIZE:
        raise FrameTooLarge(len(payload))
    return HEADER.pack(len(payload), message_type) + payload


class FrameDecoder:
    """Turns a byte stream into frames; feed it any chunking of the bytes.

    ``feed`` returns every frame completed by the new bytes. A header with an
    unknown type or an oversized length raises at once, before the payload is
    buffered. ``end_of_stream`` raises :class:`TruncatedFrame` when the stream
    stopped inside a frame.
    """

    def __init__(self, max_payload: int = MAX_FRAME_SIZE) -> None:
        self._max_payload = max_payload
        self._buffer = bytearray()
        self._header: tuple[int, MessageType] | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for the frame in progress."""
        return len(self._buffer)

    def feed(self, data: bytes, limit: int | None = None) -> list[Frame]:
        """Add bytes; return the frames they complete, at most ``limit`` of them
        (bytes after the last one returned are then not looked at)."""
        frames: list[Frame] = []
        self._buffer += data
        while limit is None or len(frames) < limit:
            if self._header is None:
                if len(self._buffer) < HEADER_SIZE:
                    return frames
                length, raw_type = HEADER.unpack_from(self._buffer)
                try:
                    message_type = MessageType(raw_type)
                except ValueError:
                    raise UnknownMessageType(raw_type) from None
                if length > self._max_payload:
                    raise FrameTooLarge(length, self._max_payload)
                del self._buffer[:HEADER_SIZE]
                self._header = (length, message_type)
            length, message_type = self._header
            if len(self._buffer) < length:
                return frames
            frames.append(Frame(message_type, bytes(self._buffer[:length])))
            del self._buffer[:length]
            self._header = None
        return frames

    def end_of_stream(self) -> None:
        if self._header is not None:
            raise TruncatedFrame(len(self._buffer), self._header[0])
        if self._buffer:
            raise TruncatedFrame(len(self._buffer), None)
