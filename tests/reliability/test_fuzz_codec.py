"""Property-based tests of the frame codec and of stream reassembly, without network.

Hypothesis feeds :class:`runtara.protocol.framing.FrameDecoder` and
:class:`runtara.protocol.streams.RequestStreams` arbitrary bytes cut into
arbitrary chunks, and drives several connections sharing one
:class:`~runtara.protocol.streams.ByteBudget` through any interleaving of
stream data, FINs, resets, request expiry and closed connections. Checked
against a reference parser and a reference model of the accounting:

- nothing but :class:`~runtara.protocol.framing.FrameError` subclasses is ever
  raised, and a bad header is reported by the very chunk that completes it;
- the decoder holds exactly the bytes of the frame in progress, never more than
  its declared length (nor more than a header before the header is whole), and
  an oversized or unknown header is refused before any payload is kept;
- valid frames decode to the same frames however they are chunked, and
  ``encode_frame`` / ``FrameDecoder`` round-trip;
- ``RequestStreams`` gives one stream one outcome whatever its chunking, its
  ``buffered`` count and the shared budget always equal what the streams still
  hold, stay within their caps, and return to zero once every stream finished,
  failed, expired or was reset, or the connection was cleared.

Each property runs a modest number of examples in CI (a few seconds in all).
For a long run set ``RUNTARA_FUZZ_EXAMPLES`` (examples per property; it also
lifts the per-test timeout), for example::

    RUNTARA_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest \\
        tests/reliability/test_fuzz_codec.py --hypothesis-show-statistics
"""

from __future__ import annotations

import pytest
from hypothesis import assume, event, given
from hypothesis import strategies as st

from runtara.protocol import framing
from runtara.protocol.framing import (
    HEADER_SIZE,
    MAX_FRAME_SIZE,
    Frame,
    FrameDecoder,
    FrameError,
    FrameTooLarge,
    MessageType,
    TruncatedFrame,
    UnknownMessageType,
    encode_frame,
)
from runtara.protocol.streams import (
    STREAM_OVERHEAD,
    BufferLimitExceeded,
    ByteBudget,
    RequestReceived,
    RequestStreams,
    StreamFailed,
)
from tests.reliability.fuzz_support import (
    LONG_RUN,
    frame,
    fuzz_settings,
    header,
)

pytestmark = pytest.mark.timeout(0 if LONG_RUN else 120)

TYPES = {int(t) for t in MessageType}
# --- a reference parser --------------------------------------------------------


def reference(data: bytes, max_payload: int = MAX_FRAME_SIZE):
    """Parse ``data`` in one go: (frames, error class or None, the number of
    bytes needed to see the error, bytes held for the frame in progress)."""
    frames = []
    offset = 0
    while True:
        rest = len(data) - offset
        if rest < HEADER_SIZE:
            return frames, None, None, rest
        length, message_type = framing.HEADER.unpack_from(data, offset)
        if message_type not in TYPES:
            return frames, UnknownMessageType, offset + HEADER_SIZE, None
        if length > max_payload:
            return frames, FrameTooLarge, offset + HEADER_SIZE, None
        if rest - HEADER_SIZE < length:
            return frames, None, None, rest - HEADER_SIZE
        start = offset + HEADER_SIZE
        frames.append(Frame(MessageType(message_type), bytes(data[start : start + length])))
        offset = start + length


def declared_length(data: bytes, max_payload: int) -> int | None:
    """The length in the header of the frame in progress at the end of ``data``."""
    frames, _, _, _ = reference(data, max_payload)
    offset = sum(HEADER_SIZE + len(f.payload) for f in frames)
    if len(data) - offset < HEADER_SIZE:
        return None
    return framing.HEADER.unpack_from(data, offset)[0]


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


# --- strategies ------------------------------------------------------------------

message_types = st.one_of(
    st.sampled_from(sorted(TYPES)), st.sampled_from([0, 7, 8, 255, 256, 65535])
)
small_payloads = st.binary(max_size=48)


def _framelike(length_offset: int, message_type: int, payload: bytes) -> bytes:
    """A frame whose declared length is off by ``length_offset`` (usually 0)."""
    length = max(0, len(payload) + length_offset)
    return header(min(length, 2**32 - 1), message_type) + payload


frame_sequences = st.lists(
    st.builds(
        _framelike,
        st.one_of(st.just(0), st.just(0), st.integers(-8, 8), st.integers(0, 2**32 - 1)),
        message_types,
        small_payloads,
    ),
    max_size=6,
).map(b"".join)

codec_bytes = st.one_of(
    st.binary(max_size=300),
    frame_sequences,
    st.builds(lambda a, b: a + b, frame_sequences, st.binary(max_size=40)),
)
"""Byte streams: random, sequences of frames with good and bad headers, with tails."""

cuts = st.lists(st.integers(0, 10**6), max_size=12)
max_payloads = st.one_of(st.just(MAX_FRAME_SIZE), st.integers(0, 64))


# --- FrameDecoder ----------------------------------------------------------------


@fuzz_settings(600)
@given(data=codec_bytes, cut_at=cuts, max_payload=max_payloads)
def test_any_bytes_in_any_chunks_decode_like_the_reference(data, cut_at, max_payload):
    frames, error, error_at, _ = reference(data, max_payload)
    decoder = FrameDecoder(max_payload)
    got: list[Frame] = []
    fed = 0
    for chunk in split(data, cut_at):
        try:
            new = decoder.feed(chunk)
        except FrameError as raised:
            # Only the chunk that completes the bad header raises, with the right error.
            assert error is not None and type(raised) is error, (raised, error)
            assert fed < error_at <= fed + len(chunk)
            if isinstance(raised, FrameTooLarge):
                assert raised.length == framing.HEADER.unpack_from(data, error_at - HEADER_SIZE)[0]
            # Frames completed by earlier chunks were all returned; the raising
            # call returns none (RequestStreams asks for one frame, so what
            # follows a request never spoils it).
            assert got == reference(data[:fed], max_payload)[0]
            return
        fed += len(chunk)
        got += new
        prefix_frames, prefix_error, _, held = reference(data[:fed], max_payload)
        assert prefix_error is None
        assert got == prefix_frames
        # Exactly the bytes of the frame in progress are held: fewer than a
        # header, or fewer than the header declared.
        assert decoder.buffered == held
        length = declared_length(data[:fed], max_payload)
        assert held < HEADER_SIZE if length is None else held < length
    assert error is None, f"{error} expected but never raised"
    assert got == frames
    if len(data) > sum(HEADER_SIZE + len(f.payload) for f in frames):
        with pytest.raises(TruncatedFrame):
            decoder.end_of_stream()
    else:
        decoder.end_of_stream()


@fuzz_settings(300)
@given(
    frames=st.lists(st.tuples(st.sampled_from(MessageType), st.binary(max_size=300)), max_size=8),
    cut_at=cuts,
)
def test_valid_frames_decode_identically_however_chunked(frames, cut_at):
    data = b"".join(encode_frame(payload, message_type) for message_type, payload in frames)
    expected = [Frame(message_type, payload) for message_type, payload in frames]
    for chunks in (split(data, cut_at), [data], [data[i : i + 1] for i in range(len(data))]):
        decoder = FrameDecoder()
        got = [f for chunk in chunks for f in decoder.feed(chunk)]
        assert got == expected
        assert decoder.buffered == 0
        decoder.end_of_stream()


@fuzz_settings(300)
@given(
    max_payload=st.one_of(st.just(MAX_FRAME_SIZE), st.integers(0, 2**32 - 2)),
    excess=st.integers(1, 2**32 - 1),
    message_type=st.sampled_from(sorted(TYPES)),
    tail=st.binary(max_size=200),
    before=st.lists(st.binary(max_size=20), max_size=3),
)
def test_an_oversized_header_is_refused_before_its_payload_is_kept(
    max_payload, excess, message_type, tail, before
):
    length = min(max_payload + excess, 2**32 - 1)
    assume(length > max_payload)
    decoder = FrameDecoder(max_payload)
    # whole frames before it are fine
    for payload in before:
        if len(payload) <= max_payload:
            assert decoder.feed(frame(payload, message_type)) == [
                Frame(MessageType(message_type), payload)
            ]
    head = header(length, message_type)
    for index in range(HEADER_SIZE - 1):
        assert decoder.feed(head[index : index + 1]) == []
        assert decoder.buffered == index + 1
    with pytest.raises(FrameTooLarge) as raised:
        decoder.feed(head[-1:] + tail)
    assert raised.value.length == length
    # The same through RequestStreams: refused at once, nothing kept for it.
    requests = RequestStreams(max_payload=max_payload)
    outcome = requests.data_received(0, head + tail, False)
    assert isinstance(outcome, StreamFailed) and isinstance(outcome.error, FrameTooLarge)
    assert requests.open_streams == 0
    assert requests.buffered == STREAM_OVERHEAD  # the stream itself until its FIN, never its bytes
    requests.data_received(0, b"x" * 1000, True)
    assert requests.buffered == 0


@fuzz_settings(200)
@given(
    length=st.integers(0, 2**32 - 1),
    message_type=st.integers(0, 65535).filter(lambda t: t not in TYPES),
    tail=st.binary(max_size=64),
)
def test_an_unknown_type_is_refused_whatever_the_length(length, message_type, tail):
    decoder = FrameDecoder()
    with pytest.raises(UnknownMessageType):
        decoder.feed(header(length, message_type) + tail)


@fuzz_settings(300)
@given(payload=st.binary(max_size=4096), message_type=st.sampled_from(MessageType))
def test_encode_then_decode_round_trips(payload, message_type):
    data = encode_frame(payload, message_type)
    assert framing.HEADER.unpack_from(data) == (len(payload), message_type)
    assert data[HEADER_SIZE:] == payload
    assert FrameDecoder().feed(data) == [Frame(message_type, payload)]


# --- one stream through RequestStreams -------------------------------------------

valid_frames = st.builds(lambda t, p: frame(p, t), st.sampled_from(sorted(TYPES)), small_payloads)

stream_scripts = st.one_of(
    # a whole valid frame, then nothing, a short tail, or more valid frames
    st.builds(
        lambda first, rest: first + rest,
        valid_frames,
        st.one_of(
            st.just(b""), st.binary(max_size=5), st.lists(valid_frames, max_size=3).map(b"".join)
        ),
    ),
    # a valid frame cut short, or with a declared length that is off
    st.builds(lambda data, cut: data[: cut % max(1, len(data))], valid_frames, st.integers(0, 99)),
    st.builds(_framelike, st.integers(-8, 8), st.sampled_from(sorted(TYPES)), small_payloads),
    # a bad first header
    st.builds(
        lambda length, t, rest: header(length, t) + rest,
        st.integers(0, 2**32 - 1),
        message_types,
        st.binary(max_size=40),
    ),
    st.binary(max_size=120),
)
"""Stream contents: valid, cut short, with bad headers, random."""


def expected_outcome(data: bytes, stream_id: int, max_payload: int = MAX_FRAME_SIZE):
    frames, error, _, _ = reference(data, max_payload)
    if frames:
        return RequestReceived(stream_id, frames[0])
    if error is not None:
        return error
    return TruncatedFrame


@fuzz_settings(400)
@given(data=stream_scripts, cut_at=cuts, fin_alone=st.booleans())
def test_a_stream_has_one_outcome_whatever_its_chunking(data, cut_at, fin_alone):
    requests = RequestStreams()
    chunks = split(data, cut_at)
    if fin_alone:
        chunks.append(b"")
    outcomes = []
    for index, chunk in enumerate(chunks):
        outcome = requests.data_received(4, chunk, index == len(chunks) - 1)
        if outcome is not None:
            outcomes.append(outcome)
    assert len(outcomes) == 1, outcomes
    expected = expected_outcome(data, 4)
    if isinstance(expected, RequestReceived):
        assert outcomes[0] == expected
    else:
        assert isinstance(outcomes[0], StreamFailed)
        assert type(outcomes[0].error) is expected
    assert requests.buffered == 0 and requests.open_streams == 0


@pytest.mark.parametrize(
    "trailer",
    [header(0, 0), header(1, 9) + b"x", header(0xFFFFFFFF, 1)],
    ids=["type-zero", "type-nine", "oversized-length"],
)
def test_a_whole_request_followed_by_a_bad_header_in_the_same_chunk_is_delivered(trailer):
    data = frame(b"payload") + trailer
    # Split after the first frame, the request is delivered ...
    split_streams = RequestStreams()
    assert split_streams.data_received(0, data[:13], False) == RequestReceived(
        0, Frame(MessageType.REQUEST, b"payload")
    )
    assert split_streams.data_received(0, data[13:], True) is None
    # ... so it must be in one chunk too.
    assert RequestStreams().data_received(0, data, True) == RequestReceived(
        0, Frame(MessageType.REQUEST, b"payload")
    )


# --- any interleaving of events on several connections ---------------------------


def describe(expected) -> str:
    if expected is None:
        return "nothing yet"
    if isinstance(expected, RequestReceived):
        return "request"
    kind, scope = expected
    return f"{kind.__name__} {scope or ''}".strip()


class _Stream:
    def __init__(self, connection: int, stream_id: int, script: bytes) -> None:
        self.connection = connection
        self.stream_id = stream_id
        self.script = script
        self.received = b""
        self.state = "new"  # new, pending, answered (waiting for its FIN), done
        self.started = 0.0
        self.charge = 0  # what the model says the stream costs the budgets


class Connections:
    """Connections sharing one ByteBudget, driven side by side with a reference
    model of what each stream must produce and cost."""

    def __init__(self, caps: list[int], shared_limit: int, max_payload: int) -> None:
        self.budget = ByteBudget(shared_limit)
        self.max_payload = max_payload
        self.caps = caps
        self.connections = [self._connection(cap) for cap in caps]
        self.streams: list[_Stream] = []
        self.next_id = 0
        self.clock = 0.0

    def _connection(self, cap: int) -> RequestStreams:
        return RequestStreams(max_payload=self.max_payload, max_buffered=cap, shared=self.budget)

    def _live(self) -> list[_Stream]:
        return [s for s in self.streams if s.state != "done"]

    def _data(self, connection: RequestStreams, stream: _Stream, chunk: bytes, fin: bool):
        return connection.data_received(stream.stream_id, chunk, fin, now=self.clock)

    def _model_buffered(self, index: int) -> int:
        return sum(s.charge for s in self.streams if s.connection == index)

    # --- the operations ---

    def open(self, connection: int, script: bytes) -> None:
        self.streams.append(_Stream(connection % len(self.connections), self.next_id, script))
        self.next_id += 4

    def data(self, pick: int, size: int, fin: bool) -> None:
        live = self._live()
        if not live:
            return
        stream = live[pick % len(live)]
        chunk = stream.script[len(stream.received) :][:size]
        expected = self._expect(stream, chunk, fin)
        outcome = self._data(self.connections[stream.connection], stream, chunk, fin)
        event(f"stream data: {describe(expected)}")
        if expected is None:
            assert outcome is None, outcome
        elif isinstance(expected, RequestReceived):
            assert outcome == expected
        else:
            kind, scope = expected
            assert isinstance(outcome, StreamFailed), outcome
            assert outcome.stream_id == stream.stream_id
            assert type(outcome.error) is kind, (outcome.error, kind)
            if scope:
                assert scope in str(outcome.error)

    def _expect(self, stream: _Stream, chunk: bytes, fin: bool):
        """Update the model for one data event and return the event it must produce."""
        if stream.state == "answered":
            if fin:
                stream.state, stream.charge = "done", 0
            return None
        index = stream.connection
        growth = len(chunk) + (STREAM_OVERHEAD if stream.state == "new" else 0)
        failure = result = None
        if self._model_buffered(index) + growth > self.caps[index]:
            failure = (BufferLimitExceeded, "the connection")
        elif self.budget.used + growth > self.budget.limit:
            failure = (BufferLimitExceeded, "the server")
        else:
            stream.received += chunk
            frames, error, _, held = reference(stream.received, self.max_payload)
            if frames:
                result = RequestReceived(stream.stream_id, frames[0])
            elif error is not None:
                failure = (error, None)
            elif fin:
                failure = (TruncatedFrame, None)
            else:
                if stream.state == "new":
                    stream.state, stream.started = "pending", self.clock
                stream.charge = held + STREAM_OVERHEAD
                return None
        # answered (delivered or failed): only the stream's overhead is left, until its FIN
        stream.state, stream.charge = ("done", 0) if fin else ("answered", STREAM_OVERHEAD)
        return failure or result

    def reset(self, pick: int) -> None:
        live = self._live()
        if not live:
            return
        stream = live[pick % len(live)]
        self.connections[stream.connection].stream_reset(stream.stream_id)
        stream.state, stream.charge = "done", 0

    def close(self, connection: int) -> None:
        index = connection % len(self.connections)
        self.connections[index].clear()
        # its streams are gone for good; a new connection takes its place
        self.streams = [s for s in self.streams if s.connection != index]
        self.connections[index] = self._connection(self.caps[index])

    def expire(self, advance: float, timeout: float) -> None:
        self.clock += advance
        late = [
            s.stream_id
            for s in self.streams
            if s.state == "pending" and self.clock - s.started >= timeout
        ]
        expired = []
        for connection in self.connections:
            expired += connection.expire(self.clock, timeout)
        assert sorted(expired) == sorted(late)
        event(f"expired streams: {min(len(late), 3)}")
        for stream in self.streams:
            if stream.stream_id in late:
                stream.state, stream.charge = "answered", STREAM_OVERHEAD

    # --- the checks ---

    def check(self) -> None:
        total = 0
        for index, connection in enumerate(self.connections):
            mine = [s for s in self.streams if s.connection == index]
            answered = sum(1 for s in mine if s.state == "answered")
            assert connection.buffered == self._model_buffered(index)
            assert connection.open_streams == sum(1 for s in mine if s.state == "pending")
            # within the cap, but for the overhead of streams already answered
            assert 0 <= connection.buffered <= self.caps[index] + STREAM_OVERHEAD * answered
            total += connection.buffered
        assert self.budget.used == total

    def finish(self) -> None:
        """Every stream ends (FIN or reset, alternately): nothing may stay charged."""
        for number, stream in enumerate(self._live()):
            connection = self.connections[stream.connection]
            if number % 2:
                connection.stream_reset(stream.stream_id)
            else:
                self._data(connection, stream, b"", True)
            stream.state, stream.charge = "done", 0
        for connection in self.connections:
            assert connection.buffered == 0
            assert connection.open_streams == 0
        assert self.budget.used == 0


_data_operation = st.tuples(
    st.just("data"), st.integers(0, 10**6), st.integers(0, 80), st.booleans()
)
operations = st.one_of(
    _data_operation,
    _data_operation,
    _data_operation,
    _data_operation,
    st.tuples(st.just("reset"), st.integers(0, 10**6)),
    st.tuples(st.just("close"), st.integers(0, 2)),
    st.tuples(st.just("expire"), st.floats(0, 10), st.floats(0.5, 5)),
    st.tuples(st.just("open"), st.integers(0, 2), stream_scripts),
)
caps = st.one_of(
    st.integers(0, 600),
    st.integers(STREAM_OVERHEAD, 4 * STREAM_OVERHEAD + 600),
    st.just(256 * 1024 * 1024),
)


@fuzz_settings(300)
@given(
    connection_caps=st.lists(caps, min_size=1, max_size=3),
    shared_limit=st.one_of(
        st.integers(0, 600),
        st.integers(STREAM_OVERHEAD, 8 * STREAM_OVERHEAD + 1200),
        st.just(2**40),
    ),
    max_payload=max_payloads,
    scripts=st.lists(st.tuples(st.integers(0, 2), stream_scripts), min_size=1, max_size=6),
    steps=st.lists(operations, min_size=10, max_size=80),
)
def test_accounting_matches_the_model_for_any_interleaving(
    connection_caps, shared_limit, max_payload, scripts, steps
):
    world = Connections(connection_caps, shared_limit, max_payload)
    for connection, script in scripts:
        world.open(connection, script)
    for name, *arguments in steps:
        getattr(world, name)(*arguments)
        world.check()
    world.finish()
