"""Shared pieces of the fuzz tests: example counts, a protobuf wire writer,
hypothesis strategies for hostile input, and the protocol oracle.

``RUNTARA_FUZZ_EXAMPLES=N`` runs every property with N examples instead of its
CI default (and lifts the per-test timeout); see the test modules' docstrings.
"""

from __future__ import annotations

import os
import struct

from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from runtara import limits
from runtara.handlers import dispatch
from runtara.protocol import codes, framing
from runtara.protocol import instance_pb2 as pb

EXAMPLES_VARIABLE = "RUNTARA_FUZZ_EXAMPLES"
LONG_RUN = bool(os.environ.get(EXAMPLES_VARIABLE))

U64_MAX = 2**64 - 1
MAX_SLEEP_MS = 3650 * 24 * 3600 * 1000


def examples(default: int) -> int:
    """``RUNTARA_FUZZ_EXAMPLES`` if set, else the CI default."""
    value = os.environ.get(EXAMPLES_VARIABLE)
    return int(value) if value else default


def fuzz_settings(default: int, **overrides) -> settings:
    """Hypothesis settings for one property: CI default examples, no deadline
    (network round trips vary), no example database written into the tree."""
    options = {
        "max_examples": examples(default),
        "deadline": None,
        "database": None,
        "print_blob": True,
        "suppress_health_check": [
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
        ],
    }
    options.update(overrides)
    return settings(**options)


# --- the protobuf wire format, written by hand ---------------------------------

VARINT, FIXED64, LENGTH_DELIMITED, START_GROUP, END_GROUP, FIXED32 = range(6)


def varint(value: int) -> bytes:
    """Base-128 varint; negative numbers as 64-bit two's complement (10 bytes)."""
    value &= U64_MAX
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def key(field: int, wire_type: int) -> bytes:
    return varint(field << 3 | wire_type)


def field_varint(field: int, value: int) -> bytes:
    return key(field, VARINT) + varint(value)


def field_bytes(field: int, data: bytes) -> bytes:
    return key(field, LENGTH_DELIMITED) + varint(len(data)) + data


def field_fixed64(field: int, data: bytes) -> bytes:
    return key(field, FIXED64) + data


def field_fixed32(field: int, data: bytes) -> bytes:
    return key(field, FIXED32) + data


def field_group(field: int, content: bytes) -> bytes:
    return key(field, START_GROUP) + content + key(field, END_GROUP)


def nested(depth: int, field: int = 127, core: bytes = b"") -> bytes:
    """``depth`` length-delimited fields each holding the next one."""
    data = core
    for _ in range(depth):
        data = field_bytes(field, data)
    return data


def frame(payload: bytes, message_type: int = 1) -> bytes:
    """A frame header for any length and type (even invalid ones) plus the payload."""
    return struct.pack(">IH", len(payload), message_type) + payload


def header(length: int, message_type: int) -> bytes:
    return struct.pack(">IH", length, message_type)


def request_frame(request: pb.RpcRequest, message_type: int = 1) -> bytes:
    return frame(request.SerializeToString(), message_type)


# --- what the server must do with the bytes of one stream ----------------------

PENDING = "pending"
"""The bytes so far are the start of a valid frame: the server waits for more."""
REJECTED = "rejected"
"""Not a valid frame: the server ends the stream with an empty FIN."""


def first_frame(data: bytes, fin: bool) -> bytes | str:
    """The payload of the stream's first frame, or PENDING, or REJECTED."""
    if len(data) < framing.HEADER_SIZE:
        return REJECTED if fin else PENDING
    length, message_type = framing.HEADER.unpack_from(data)
    if message_type not in set(framing.MessageType) or length > framing.MAX_FRAME_SIZE:
        return REJECTED
    end = framing.HEADER_SIZE + length
    if len(data) >= end:
        return data[framing.HEADER_SIZE : end]
    return REJECTED if fin else PENDING


# --- the protocol oracle -------------------------------------------------------

REPLY_KINDS = {
    name for name, operation in dispatch.INSTANCE_OPERATIONS.items() if operation.replies
}
NO_REPLY_KINDS = set(dispatch.INSTANCE_OPERATIONS) - REPLY_KINDS


def parse_request(payload: bytes) -> pb.RpcRequest | None:
    """What the server's protobuf library makes of the payload (None: invalid)."""
    try:
        return pb.RpcRequest.FromString(payload)
    except DecodeError:
        return None


def decode_reply(answer: bytes) -> pb.RpcResponse:
    """The answer must be exactly one type-2 frame carrying an RpcResponse."""
    decoder = framing.FrameDecoder()
    frames = decoder.feed(answer)
    assert len(frames) == 1, f"expected one reply frame, got {len(frames)} in {answer[:64]!r}"
    decoder.end_of_stream()
    assert frames[0].message_type == framing.MessageType.RESPONSE
    return pb.RpcResponse.FromString(frames[0].payload)


def check_answer(payload: bytes | str, answer: bytes) -> pb.RpcResponse | None:
    """Assert that ``answer`` (all the server sent before its FIN) is what the
    protocol prescribes for a stream whose first frame carried ``payload``
    (or REJECTED). Returns the reply, if there is one."""
    if payload == REJECTED:
        assert answer == b"", f"a bad frame must get an empty FIN, got {answer[:64]!r}"
        return None
    request = parse_request(payload)
    if request is None:
        assert answer == b"", f"invalid protobuf must get an empty FIN, got {answer[:64]!r}"
        return None
    kind = request.WhichOneof("request")
    if kind in NO_REPLY_KINDS:
        assert answer == b"", f"{kind} must be answered with an empty FIN, got {answer[:64]!r}"
        return None
    assert answer, f"{kind or 'an empty RpcRequest'} must be answered with a frame"
    reply = decode_reply(answer)
    which = reply.WhichOneof("response")
    if kind is None:
        assert which == "error"
        assert reply.error.code == codes.EMPTY_REQUEST
        assert reply.error.message == "RpcRequest contained no request"
        return reply
    if which == "error":
        assert kind != "register_instance", "RegisterInstance never answers with an RpcError"
        assert reply.error.code == dispatch.INSTANCE_OPERATIONS[kind].error_code, reply.error
        assert not reply.error.message.startswith("Internal error"), reply.error
    else:
        assert which == kind, f"{kind} answered with {which}"
    return reply


def text_refusal(message) -> tuple[str, str] | None:
    """The first text field of ``message`` the server refuses, and why: NUL, or an
    identifier longer than its documented limit (runtara.limits.TEXT_LIMITS)."""
    for field, value in message.ListFields():
        if field.type != field.TYPE_STRING:
            continue
        if "\x00" in value:
            return field.name, f"{field.name} must not contain NUL characters"
        limit = limits.TEXT_LIMITS.get(field.name)
        size = len(value.encode("utf-8"))
        if limit is not None and size > limit:
            return field.name, f"{field.name} is {size} bytes long; at most {limit} are allowed"
    return None


def sleep_holds(request: pb.RpcRequest | None, is_running) -> bool:
    """True when the request is a Sleep the server will legitimately hold for
    more than a moment (a running instance and an allowed duration): the test
    cannot wait for its reply. ``is_running(instance_id)`` asks the storage."""
    if request is None or request.WhichOneof("request") != "sleep":
        return False
    sleep = request.sleep
    if not sleep.instance_id or sleep.duration_ms <= 250 or sleep.duration_ms > MAX_SLEEP_MS:
        return False
    if text_refusal(sleep) is not None:
        return False
    return is_running(sleep.instance_id)


# --- strategies ----------------------------------------------------------------

SPECIAL_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "a\x00",
    "\U0010ffff",
    "\U0001f600\u200d\U0001f4bb",
    "\ufeff",
    "\u202e",
    "\ufffd",
    "'; DROP TABLE instances; --",
    "%s%n%x",
    "../" * 8,
    "\\",
    "::retry::1",
    "\n\r\t",
]

short_texts = st.one_of(
    st.text(max_size=24),  # every code point but surrogates: NUL, controls, non-BMP
    st.sampled_from(SPECIAL_TEXT),
)
texts = st.one_of(
    short_texts,
    st.builds(
        lambda unit, count: unit * count,
        st.text(min_size=1, max_size=4),
        st.integers(256, 50_000),
    ),
)
"""Ids and other strings: short arbitrary text, nasty classics, and very long ids."""

short_blobs = st.binary(max_size=64)
blobs = st.one_of(
    short_blobs,
    st.builds(
        lambda unit, count: unit * count, st.binary(min_size=1, max_size=8), st.integers(1, 20_000)
    ),
)

u64 = st.one_of(st.integers(0, U64_MAX), st.sampled_from([0, 1, 2**32, 2**63 - 1, 2**63, U64_MAX]))
i64 = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([-(2**63), -1, 0, 1, 2**63 - 1]))
u32 = st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 2**31, 2**32 - 1]))
enums = st.one_of(
    st.integers(-(2**31), 2**31 - 1),
    st.sampled_from([-(2**31), -1, 0, 1, 2, 3, 4, 5, 6, 7, 99, 2**31 - 1]),
)
sleep_durations = st.one_of(
    st.integers(0, 250),
    st.integers(MAX_SLEEP_MS + 1, U64_MAX),  # refused as too long
    u64,
    st.sampled_from([0, 1, MAX_SLEEP_MS, MAX_SLEEP_MS + 1]),
)


def optional(strategy):
    return st.one_of(st.none(), strategy)


REQUEST_FIELDS = [field.number for field in pb.RpcRequest.DESCRIPTOR.fields]

field_numbers = st.one_of(
    st.sampled_from([*REQUEST_FIELDS, 1, 2, 3, 4, 5, 6, 15, 100]),
    st.integers(1, 2**29 - 1),
    st.sampled_from([0, 2**29, 2**32 - 1]),  # invalid field numbers
)

_leaf_fields = st.one_of(
    st.builds(field_varint, field_numbers, u64),
    st.builds(field_fixed64, field_numbers, st.binary(min_size=8, max_size=8)),
    st.builds(field_fixed32, field_numbers, st.binary(min_size=4, max_size=4)),
    st.builds(field_bytes, field_numbers, st.binary(max_size=32)),
    st.builds(field_bytes, field_numbers, st.text(max_size=16).map(str.encode)),
    st.builds(
        lambda f, w, junk: key(f, w) + junk,
        field_numbers,
        st.sampled_from([6, 7]),
        st.binary(max_size=8),
    ),
    st.builds(lambda f: key(f, END_GROUP), field_numbers),  # a stray end-group
    st.binary(max_size=8),  # raw junk: truncated varints, lengths past the end
)


def _extend(inner):
    return st.lists(
        st.one_of(
            _leaf_fields,
            st.builds(field_bytes, field_numbers, inner),
            st.builds(field_group, field_numbers, inner),
        ),
        max_size=4,
    ).map(b"".join)


wire_messages = st.recursive(
    st.lists(_leaf_fields, max_size=6).map(b"".join), _extend, max_leaves=40
)
"""Protobuf-shaped junk: any field numbers and wire types, nested."""


def _retyped(field: int, wire_type: int, value: bytes) -> bytes:
    """``value`` under ``field`` with the wire type given, whatever the schema says."""
    if wire_type == VARINT:
        return field_varint(field, int.from_bytes(value[:9].ljust(1, b"\x00"), "little"))
    if wire_type == FIXED64:
        return field_fixed64(field, value[:8].ljust(8, b"\x00"))
    if wire_type == FIXED32:
        return field_fixed32(field, value[:4].ljust(4, b"\x00"))
    if wire_type == START_GROUP:
        return field_group(field, value)
    return field_bytes(field, value)


_wrong_wire_types = st.builds(
    lambda oneof, outer_type, inner: _retyped(oneof, outer_type, inner),
    st.sampled_from(REQUEST_FIELDS),
    st.sampled_from([VARINT, FIXED64, FIXED32, START_GROUP, LENGTH_DELIMITED]),
    st.lists(
        st.builds(
            _retyped,
            st.integers(1, 6),
            st.sampled_from([VARINT, FIXED64, FIXED32, START_GROUP, LENGTH_DELIMITED]),
            st.one_of(st.binary(max_size=16), st.text(max_size=8).map(str.encode)),
        ),
        max_size=6,
    ).map(b"".join),
)
"""Known fields (the oneof and the fields inside it) with any wire type."""


class Hostile:
    """Every strategy for hostile input, built on one choice of strings and byte fields."""

    def __init__(self, texts, blobs) -> None:
        events = st.builds(
            pb.InstanceEvent,
            instance_id=texts,
            event_type=enums,
            checkpoint_id=optional(texts),
            payload=blobs,
            timestamp_ms=i64,
            subtype=optional(texts),
        )
        self.messages = {
            "register_instance": st.builds(
                pb.RegisterInstanceRequest,
                instance_id=texts,
                tenant_id=texts,
                checkpoint_id=optional(texts),
            ),
            "sleep": st.builds(
                pb.SleepRequest,
                instance_id=texts,
                duration_ms=sleep_durations,
                checkpoint_id=texts,
                state=blobs,
            ),
            "instance_event": events,
            "instance_event_batch": st.builds(
                pb.InstanceEventBatch, events=st.lists(events, max_size=8)
            ),
            "get_instance_status": st.builds(pb.GetInstanceStatusRequest, instance_id=texts),
            "checkpoint": st.builds(
                pb.CheckpointRequest, instance_id=texts, checkpoint_id=texts, state=blobs
            ),
            "get_checkpoint": st.builds(
                pb.GetCheckpointRequest, instance_id=texts, checkpoint_id=texts
            ),
            "poll_signals": st.builds(
                pb.PollSignalsRequest, instance_id=texts, checkpoint_id=optional(texts)
            ),
            "signal_ack": st.builds(
                pb.SignalAck, instance_id=texts, signal_type=enums, acknowledged=st.booleans()
            ),
            "retry_attempt": st.builds(
                pb.RetryAttemptEvent,
                instance_id=texts,
                checkpoint_id=texts,
                attempt_number=u32,
                timestamp_ms=i64,
                error_message=optional(texts),
            ),
        }
        self.requests = st.one_of(
            *(
                strategy.map(lambda message, kind=kind: pb.RpcRequest(**{kind: message}))
                for kind, strategy in self.messages.items()
            ),
            st.just(pb.RpcRequest()),
        )
        """Well-formed RpcRequests of every kind with extreme values."""
        serialized = st.one_of(
            *(strategy.map(lambda m: m.SerializeToString()) for strategy in self.messages.values()),
            self.requests.map(lambda m: m.SerializeToString()),
            st.builds(
                lambda code, message: pb.RpcResponse(
                    error=pb.RpcError(code=code, message=message)
                ).SerializeToString(),
                texts,
                texts,
            ),
        )
        self.junk_payloads = st.one_of(
            wire_messages,
            # valid protobuf of the wrong message, in the oneof or at the top
            st.builds(field_bytes, st.sampled_from(REQUEST_FIELDS), serialized),
            serialized,
            _wrong_wire_types,
            # a valid request with junk after it (later fields win, unknown ones are kept)
            st.builds(lambda r, junk: r.SerializeToString() + junk, self.requests, wire_messages),
            st.binary(max_size=128),
        )
        """Frame payloads that are not well-formed requests (some still parse)."""
        self.payloads = st.one_of(
            self.requests.map(lambda r: r.SerializeToString()), self.junk_payloads
        )
        trailers = st.one_of(
            st.just(b""),
            st.binary(max_size=5),  # shorter than a header
            self.payloads.map(frame),  # a second, valid frame (ignored)
        )
        self.stream_contents = st.one_of(
            # one frame of any valid type, perhaps with something after it
            st.builds(
                lambda p, t, rest: frame(p, t) + rest, self.payloads, st.integers(1, 6), trailers
            ),
            # a frame cut short
            st.builds(
                lambda p, cut: frame(p)[: cut % (len(p) + 6)], self.payloads, st.integers(0, 2**16)
            ),
            # a header with a bad type or an oversized length, and bytes after it
            st.builds(
                lambda length, t, rest: header(length, t) + rest,
                st.integers(0, 2**32 - 1),
                st.one_of(st.just(0), st.integers(7, 65535)),
                st.binary(max_size=64),
            ),
            st.builds(
                lambda length, t, rest: header(length, t) + rest,
                st.integers(framing.MAX_FRAME_SIZE + 1, 2**32 - 1),
                st.integers(1, 6),
                st.binary(max_size=64),
            ),
            # a declared length that disagrees with what follows
            st.builds(lambda length, p: header(length, 1) + p, st.integers(0, 300), self.payloads),
            st.binary(max_size=256),
        )
        """The bytes of one request stream: valid, truncated, oversized or random."""


hostile = Hostile(texts, blobs)
"""Hostile input with strings and byte fields of any size up to ~200 KB."""
small_hostile = Hostile(short_texts, short_blobs)
"""The same with short strings and byte fields, for long runs of many requests."""

requests = hostile.requests
junk_payloads = hostile.junk_payloads
payloads = hostile.payloads
stream_contents = hostile.stream_contents
