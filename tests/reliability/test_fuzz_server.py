"""Hostile input over real QUIC, property-based: every hostile request gets the
answer the protocol prescribes, quickly, and everyone else keeps being served.

One in-process server on SQLite serves the whole module. Hypothesis sends it
arbitrary stream contents (random bytes, truncated frames, oversized and
unknown headers, lengths that disagree with the payload), protobuf junk in
valid frames (any field numbers and wire types, nested length-delimited
fields and groups, valid messages of the wrong type, known fields with the
wrong wire type), well-formed requests of every kind with extreme values
(uint64 durations, negative timestamps, unknown enum numbers, 0 and maximal
attempt numbers, empty, very long, NUL-carrying and non-BMP ids), and
interleaved streams that are chunked, half-closed, reset and abandoned. For
each case:

- the answer arrives within a few seconds and is what ``fuzz_support.check_answer``
  derives from the bytes: an empty FIN for a bad frame, invalid protobuf or a
  no-reply request, else one type-2 frame whose ``RpcResponse`` carries the
  request's own response or an ``RpcError`` with the operation's code (never an
  ``Internal error``); well-formed requests are also checked against the
  storage (validation texts, unknown instances, exactly-once checkpoints);
- a well-behaved client on its own connection then registers, checkpoints and
  reads its checkpoint back byte for byte;
- the server's counters of buffered and admitted bytes and of running and
  parked requests return to zero.

Pathological payloads (hundreds of thousands of unknown fields, nesting
thousands deep, a 30,000-event batch while a well-behaved client keeps
working) have their own tests, and ``test_server_memory_stays_flat`` runs
thousands of hostile requests against a server in a child process and bounds
the growth of its resident memory.

The CI run uses modest example counts (well under a
minute for the module). For a long run set ``RUNTARA_FUZZ_EXAMPLES`` (examples
per property, and hostile requests of the memory test; it also lifts the
per-test timeout), for example::

    RUNTARA_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest \\
        tests/reliability/test_fuzz_server.py --hypothesis-show-statistics
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import threading
import time
import uuid

import pytest
from hypothesis import Phase, event, given, reject
from hypothesis import strategies as st

from runtara import mapping, records
from runtara.bench.servers import memory
from runtara.client.connection import Connection
from runtara.protocol import framing
from runtara.protocol import instance_pb2 as pb
from runtara.protocol import management_pb2 as mpb
from tests.reliability import fuzz_support as fz
from tests.support import LoopbackServer, RpcClient, ServerProcess, sqlite_url, wait_for

# Room for hypothesis to shrink a failure (it stops after five minutes) and report it.
pytestmark = pytest.mark.timeout(0 if fz.LONG_RUN else 600)

ANSWER_TIMEOUT = 5.0
"""Longest wait for any answer; a healthy server answers these in milliseconds."""
MiB = 1024 * 1024


# --- clients -----------------------------------------------------------------------


class WellBehaved:
    """A client on its own connection that must keep getting exact answers."""

    def __init__(self, address: tuple[str, int], seed: int = 0) -> None:
        self.client = RpcClient(address, timeout=ANSWER_TIMEOUT)
        self.prefix = f"well-behaved-{uuid.uuid4().hex}"
        self.random = random.Random(seed)
        self.count = 0

    def round_trip(self) -> None:
        self.count += 1
        instance_id = f"{self.prefix}-{self.count}"
        state = self.random.randbytes(self.random.randrange(0, 3000))
        registered = self.client.register(instance_id, "well-behaved")
        assert registered.success, registered
        saved = self.client.checkpoint(instance_id, "step", state)
        assert saved.WhichOneof("response") == "checkpoint", saved
        assert not saved.checkpoint.found
        read = self.client.get_checkpoint(instance_id, "step")
        assert read.WhichOneof("response") == "get_checkpoint", read
        assert read.get_checkpoint.found and read.get_checkpoint.state == state

    @contextlib.contextmanager
    def in_background(self, pause: float = 0.02):
        """Round trips in a loop on a thread (``pause`` seconds apart); yields the
        list of their durations."""
        durations: list[float] = []
        failures: list[BaseException] = []
        stop = threading.Event()

        def loop():
            while not stop.is_set():
                started = time.monotonic()
                try:
                    self.round_trip()
                except BaseException as failure:  # reported in the test's thread
                    failures.append(failure)
                    return
                durations.append(time.monotonic() - started)
                stop.wait(pause)

        thread = threading.Thread(target=loop, name="well-behaved")
        thread.start()
        try:
            yield durations
        finally:
            stop.set()
            thread.join(ANSWER_TIMEOUT * 4)
        assert not failures, f"the well-behaved client failed: {failures[0]!r}"

    def close(self) -> None:
        self.client.close()


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts} - {0, len(data)})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


async def _exchange(
    connection: Connection,
    chunks: list[bytes],
    fin: bool,
    gap: float = 0.0,
    timeout: float = ANSWER_TIMEOUT,
) -> bytes:
    """Send the chunks on a new stream (FIN on the last if ``fin``) and return
    everything the server sends until its FIN; then end our side if we had not."""
    stream = connection.open_stream()
    try:
        for index, chunk in enumerate(chunks or [b""]):
            if index and gap:
                await asyncio.sleep(gap)
            stream.send(chunk, end=fin and index == max(len(chunks) - 1, 0))
        try:
            return await asyncio.wait_for(stream.read_to_end(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"no answer within {timeout}s") from None
    finally:
        if not fin:
            stream.reset(0)
        stream.close()


def exchange(
    client: RpcClient,
    data: bytes,
    *,
    cuts=(),
    fin: bool = True,
    gap: float = 0.0,
    timeout: float = ANSWER_TIMEOUT,
) -> bytes:
    chunks = split(data, list(cuts)) if cuts else [data]
    return client.loop.run(_exchange(client.connection, chunks, fin, gap, timeout))


def settled(server: LoopbackServer) -> None:
    """No request bytes are held or admitted and no request is running or parked."""

    def idle():
        stats = server.server.stats()
        return (
            stats["buffered_bytes"] == 0
            and stats["admitted_bytes"] == 0
            and stats["running"] == 0
            and stats["parked"] == 0
        )

    try:
        wait_for(idle, timeout=3)
    except AssertionError:
        raise AssertionError(f"the server did not settle: {server.server.stats()}") from None


def guard_sleep(server: LoopbackServer | None, payload: bytes | str) -> None:
    """Reject an example that is a legitimate long Sleep (its reply comes much
    later); without a server to ask, any such Sleep."""
    if not isinstance(payload, bytes):
        return
    if server is None:
        running = lambda instance_id: True  # noqa: E731
    else:
        running = lambda instance_id: is_running(server, instance_id)  # noqa: E731
    if fz.sleep_holds(fz.parse_request(payload), running):
        reject()


def is_running(server: LoopbackServer, instance_id: str) -> bool:
    instance = server.instance(instance_id)
    return instance is not None and instance.status is records.InstanceStatus.RUNNING


# --- fixtures ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    running = LoopbackServer(sqlite_url(tmp_path_factory.mktemp("fuzz-server")))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def hostile(fuzz_server):
    return fuzz_server.client(timeout=ANSWER_TIMEOUT)


@pytest.fixture(scope="module")
def good(fuzz_server):
    client = WellBehaved(fuzz_server.address)
    yield client
    client.close()


@pytest.fixture(scope="module", autouse=True)
def quiet_server_logs():
    """The server logs a warning per bad frame: keep only errors."""
    logger = logging.getLogger("runtara")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


KNOWN_IDS = [
    "known-running-1",
    "known-running-2",
    "known-suspended",
    "known-completed",
    "known-failed",
    "known-cancelled",
]


@pytest.fixture(scope="module")
def known_ids(fuzz_server, hostile):
    """Instances in every state, for well-formed requests to address."""
    for instance_id in KNOWN_IDS:
        assert hostile.register(instance_id).success
    hostile.event("known-suspended", pb.EVENT_SUSPENDED)
    hostile.event("known-completed", pb.EVENT_COMPLETED, b"done")
    hostile.event("known-failed", pb.EVENT_FAILED, b"boom")
    hostile.ack("known-cancelled", pb.SIGNAL_CANCEL)
    hostile.checkpoint("known-running-1", "", b"empty id")
    hostile.checkpoint("known-running-1", "step", b"\x00state")
    assert fuzz_server.instance("known-cancelled").status is records.InstanceStatus.CANCELLED
    return KNOWN_IDS


# --- whole requests ----------------------------------------------------------------


@fz.fuzz_settings(150)
@given(data=fz.stream_contents, cuts=st.lists(st.integers(0, 10**6), max_size=3))
def test_any_stream_contents_get_their_protocol_answer(fuzz_server, hostile, good, data, cuts):
    expected = fz.first_frame(data, fin=True)
    guard_sleep(fuzz_server, expected)
    event("answer: " + ("empty FIN" if expected == fz.REJECTED else "per the payload"))
    fz.check_answer(expected, exchange(hostile, data, cuts=cuts))
    good.round_trip()
    settled(fuzz_server)


@fz.fuzz_settings(150)
@given(
    payload=fz.junk_payloads,
    message_type=st.integers(1, 6),
    cuts=st.lists(st.integers(0, 10**6), max_size=3),
    fin=st.booleans(),
)
def test_protobuf_junk_gets_its_protocol_answer(
    fuzz_server, hostile, good, payload, message_type, cuts, fin
):
    guard_sleep(fuzz_server, payload)
    request = fz.parse_request(payload)
    event("parsed: " + ("no" if request is None else str(request.WhichOneof("request"))))
    # A whole frame is answered without waiting for the client's FIN.
    answer = exchange(hostile, fz.frame(payload, message_type), cuts=cuts, fin=fin)
    fz.check_answer(payload, answer)
    good.round_trip()
    settled(fuzz_server)


def check_request(server: LoopbackServer, request: pb.RpcRequest, answer: bytes, before) -> None:
    """Beyond the generic oracle: what this well-formed request must get, given
    the instance and checkpoint the storage held before it (``before``)."""
    reply = fz.check_answer(request.SerializeToString(), answer)
    kind = request.WhichOneof("request")
    if reply is None or kind is None:
        return
    message = getattr(request, kind)
    instance, stored = before
    if kind == "register_instance":
        registered = reply.register_instance
        if not message.instance_id:
            assert (registered.success, registered.error) == (False, "instance_id is required")
        elif not message.tenant_id:
            assert (registered.success, registered.error) == (False, "tenant_id is required")
        elif (refusal := fz.text_refusal(message)) is not None:
            assert (registered.success, registered.error) == (False, refusal[1])
        elif instance is None and message.HasField("checkpoint_id"):
            assert not registered.success
            assert registered.error == f"Checkpoint '{message.checkpoint_id}' not found"
        elif instance is None:
            assert registered.success, registered.error
        return
    if not message.instance_id:
        assert reply.error.message == "Validation error for 'instance_id': instance_id is required"
        return
    if (refusal := fz.text_refusal(message)) is not None:
        field, reason = refusal
        assert reply.error.message == f"Validation error for '{field}': {reason}"
        return
    if kind == "sleep" and message.duration_ms > fz.MAX_SLEEP_MS:
        assert reply.error.message == "Validation error for 'duration_ms': at most 3650 days"
        return
    if kind == "get_instance_status":
        status = reply.get_instance_status
        assert status.instance_id == message.instance_id
        if instance is None:
            assert (status.status, status.error) == (pb.STATUS_UNKNOWN, "Instance not found")
        else:
            assert status.status == mapping.status_to_wire(instance.status)
        return
    if instance is None:
        if kind == "poll_signals":
            assert reply.poll_signals == pb.PollSignalsResponse()
        else:
            assert reply.error.message == f"Instance '{message.instance_id}' not found"
        return
    if kind == "get_checkpoint":
        got = reply.get_checkpoint
        assert got.found == (stored is not None)
        assert got.state == (stored.state if stored else b"")
    elif kind == "checkpoint" and instance.status is records.InstanceStatus.RUNNING:
        saved = reply.checkpoint
        assert saved.found == (stored is not None)
        assert saved.state == (stored.state if stored else b"")
        after = server.read(
            lambda tx: tx.get_checkpoint(message.instance_id, message.checkpoint_id)
        )
        assert after.state == (stored.state if stored else message.state)


def storage_before(server: LoopbackServer, request: pb.RpcRequest):
    kind = request.WhichOneof("request")
    message = getattr(request, kind) if kind else None
    instance_id = getattr(message, "instance_id", "")
    if not instance_id:
        return None, None
    instance = server.instance(instance_id)
    checkpoint_id = getattr(message, "checkpoint_id", None)
    if instance is None or checkpoint_id is None:
        return instance, None
    return instance, server.read(lambda tx: tx.get_checkpoint(instance_id, checkpoint_id))


@st.composite
def requests_on_known_ids(draw):
    """Well-formed requests; half of those with an instance id address a known instance."""
    request = draw(fz.requests)
    kind = request.WhichOneof("request")
    if kind and draw(st.booleans()):
        message = getattr(request, kind)
        if hasattr(message, "instance_id"):
            message.instance_id = draw(st.sampled_from(KNOWN_IDS))
        if hasattr(message, "checkpoint_id") and draw(st.booleans()):
            message.checkpoint_id = draw(st.sampled_from(["", "step"]))
    return request


@fz.fuzz_settings(200)
@given(request=requests_on_known_ids())
def test_requests_with_extreme_values_get_exact_answers(
    fuzz_server, hostile, good, known_ids, request
):
    payload = request.SerializeToString()
    guard_sleep(fuzz_server, payload)
    kind = request.WhichOneof("request")
    event(f"request: {kind}")
    before = storage_before(fuzz_server, request)
    answer = exchange(hostile, fz.frame(payload))
    check_request(fuzz_server, request, answer, before)
    good.round_trip()
    settled(fuzz_server)


_serial = iter(range(10**9))


def without_nul(texts):
    return texts.map(lambda text: text.replace("\x00", ""))


@fz.fuzz_settings(100)
@given(
    instance_id=without_nul(fz.short_texts).filter(bool),
    tenant_id=without_nul(fz.short_texts).filter(bool),
    checkpoint_id=without_nul(fz.texts).filter(lambda text: len(text.encode()) <= 1024),
    state=fz.blobs,
    other_state=fz.blobs,
)
def test_odd_ids_round_trip_exactly(
    fuzz_server, hostile, instance_id, tenant_id, checkpoint_id, state, other_state
):
    # unique per example, keeping whatever the id starts with
    instance_id = f"{instance_id}#{next(_serial)}#"
    registered = hostile.register(instance_id, tenant_id)
    assert registered.success, registered.error
    assert fuzz_server.instance(instance_id).tenant_id == tenant_id
    saved = hostile.checkpoint(instance_id, checkpoint_id, state)
    assert saved.WhichOneof("response") == "checkpoint" and not saved.checkpoint.found
    again = hostile.checkpoint(instance_id, checkpoint_id, other_state)
    assert again.checkpoint.found and again.checkpoint.state == state
    read = hostile.get_checkpoint(instance_id, checkpoint_id).get_checkpoint
    assert read.found and read.state == state
    status = hostile.status(instance_id)
    assert status.instance_id == instance_id and status.status == pb.STATUS_RUNNING
    assert status.checkpoint_id == checkpoint_id
    # an id that differs by one character at its end is another instance
    for sibling in (instance_id + " ", instance_id[:-1]):
        missing = hostile.get_checkpoint(sibling, checkpoint_id)
        assert missing.error.message == f"Instance '{sibling}' not found"
    settled(fuzz_server)


# --- streams: chunked, interleaved, half-closed, reset ----------------------------

ENDINGS = ["fin", "fin-alone", "open", "reset", "stop-reading"]

stream_plans = st.lists(
    st.tuples(
        fz.stream_contents,
        st.lists(st.integers(0, 10**6), max_size=4),
        st.sampled_from(ENDINGS),
    ),
    min_size=1,
    max_size=6,
)


async def _run_plans(connection: Connection, plans, rng: random.Random, pause: bool):
    """Send every plan's chunks on its own stream, interleaved; return the streams."""
    streams = []
    for _ in plans:
        stream = connection.open_stream()
        stream.send(b"")  # creates it, so that the next one gets the next id
        streams.append(stream)
    queues = []
    for data, cuts, ending in plans:
        chunks = split(data, cuts) or [b""]
        if ending == "reset" and len(chunks) > 1:
            chunks = chunks[:-1]  # the last chunk never goes out: reset instead
        queues.append(chunks)
    waiting = list(range(len(plans)))
    while waiting:
        index = rng.choice(waiting)
        stream, ending = streams[index], plans[index][2]
        chunk = queues[index].pop(0)
        last = not queues[index]
        # (aioquic refuses to send on a stream the server already stopped and ended)
        with contextlib.suppress(RuntimeError, ValueError):
            stream.send(chunk, end=last and ending in ("fin", "stop-reading"))
            if last and ending == "fin-alone":
                stream.send(b"", end=True)
        if last:
            waiting.remove(index)
            with contextlib.suppress(ValueError):
                if ending == "reset":
                    stream.reset(7)
                elif ending == "stop-reading":
                    stream.stop_reading(7)
        if pause and rng.random() < 0.3:
            await asyncio.sleep(0.002)
    return streams


async def _answers(streams, plans):
    """Read what the protocol says must come; reset what we left open."""
    results = []
    for stream, (data, _, ending) in zip(streams, plans, strict=True):
        expected = None
        if ending in ("fin", "fin-alone"):
            expected = fz.first_frame(data, fin=True)
        elif ending == "open":
            expected = fz.first_frame(data, fin=False)
            if expected == fz.PENDING:
                expected = None  # the server rightly waits for the rest
        answer = None
        if expected is not None:
            try:
                answer = await asyncio.wait_for(stream.read_to_end(), ANSWER_TIMEOUT)
            except asyncio.TimeoutError:
                answer = TimeoutError
        if ending in ("open", "reset"):
            stream.reset(0)
        stream.close()
        results.append((expected, answer))
    return results


@fz.fuzz_settings(80)
@given(plans=stream_plans, rng=st.randoms(use_true_random=False), pause=st.booleans())
def test_interleaved_streams_with_resets_and_half_closes(
    fuzz_server, hostile, good, plans, rng, pause
):
    for data, _, _ in plans:
        guard_sleep(fuzz_server, fz.first_frame(data, fin=False))
    loop = hostile.loop
    # A fresh connection per example, so that one example's leftovers cannot
    # affect the next.
    connection = loop.run(Connection.open(*fuzz_server.address, timeout=ANSWER_TIMEOUT))
    try:
        streams = loop.run(_run_plans(connection, plans, rng, pause))
        results = loop.run(_answers(streams, plans), ANSWER_TIMEOUT * (len(plans) + 1))
        for (expected, answer), (_, _, ending) in zip(results, plans, strict=True):
            event(f"ending: {ending}")
            if expected is None:
                continue
            assert answer is not TimeoutError, f"no answer within {ANSWER_TIMEOUT}s ({ending})"
            fz.check_answer(expected, answer)
        settled(fuzz_server)
    finally:
        loop.run(connection.close(wait=0.05))
    good.round_trip()


# --- pathological payloads ---------------------------------------------------------


def _status(instance_id: str = "ghost") -> bytes:
    return pb.RpcRequest(
        get_instance_status=pb.GetInstanceStatusRequest(instance_id=instance_id)
    ).SerializeToString()


def _many_unknown_fields(count: int) -> bytes:
    parts = []
    for number in range(count):
        field = 16 + number % 100_000
        kind = number % 4
        if kind == 0:
            parts.append(fz.field_varint(field, number))
        elif kind == 1:
            parts.append(fz.field_fixed64(field, b"\xff" * 8))
        elif kind == 2:
            parts.append(fz.field_fixed32(field, b"\x00" * 4))
        else:
            parts.append(fz.field_bytes(field, b"junk"))
    return b"".join(parts)


def _deep_groups(depth: int, field: int = 127) -> bytes:
    return fz.key(field, fz.START_GROUP) * depth + fz.key(field, fz.END_GROUP) * depth


def _oneof_churn(count: int) -> bytes:
    """The oneof set ``count`` times over; the last one wins."""
    parts = []
    for number in range(count):
        parts.append(
            fz.field_bytes(
                7, pb.GetInstanceStatusRequest(instance_id=f"i{number}").SerializeToString()
            )
            if number % 2
            else fz.field_bytes(9, b"\x0a\x01x\x12\x01y")
        )
    return b"".join(parts)


PATHOLOGICAL = {
    "200k-unknown-fields": _status() + _many_unknown_fields(200_000),
    "unknown-fields-inside-the-oneof": fz.field_bytes(
        7, b"\x0a\x05ghost" + _many_unknown_fields(50_000)
    ),
    "ld-nesting-5000-deep": _status() + fz.nested(5000),
    "ld-nesting-5000-deep-inside-the-oneof": fz.field_bytes(
        8, b"\x0a\x05ghost" + fz.nested(5000, field=4)
    ),
    "group-nesting-60-deep": _status() + _deep_groups(60),
    "group-nesting-5000-deep": _status() + _deep_groups(5000),
    "oneof-set-20000-times": _oneof_churn(20_000),
    "overlong-varint": b"\x38" + b"\xff" * 11 + b"\x01",
    "4-mib-instance-id": _status("\U0001f600" * MiB),
    "4-mib-checkpoint-ids": pb.RpcRequest(
        checkpoint=pb.CheckpointRequest(
            instance_id="i" * (2 * MiB), checkpoint_id="c" * (2 * MiB), state=b"s"
        )
    ).SerializeToString(),
    "1-mib-random-bytes": random.Random(1).randbytes(MiB),
    "events-field-packed-as-varints": fz.field_bytes(6, fz.field_bytes(1, b"\x08\x01\x08\x02")),
}


@pytest.mark.parametrize("payload", PATHOLOGICAL.values(), ids=PATHOLOGICAL.keys())
def test_pathological_payloads_get_their_protocol_answer(fuzz_server, hostile, good, payload):
    assert len(payload) <= framing.MAX_FRAME_SIZE
    fz.check_answer(payload, exchange(hostile, fz.frame(payload)))
    good.round_trip()
    settled(fuzz_server)


def test_a_30000_event_batch_is_applied_while_others_are_served(fuzz_server, hostile):
    owner = WellBehaved(fuzz_server.address, seed=1)
    instance_id = f"batch-{uuid.uuid4().hex}"
    assert owner.client.register(instance_id).success
    events = []
    for number in range(30_000):
        if number % 30 == 0:
            events.append(pb.InstanceEvent(instance_id=instance_id, event_type=pb.EVENT_CUSTOM))
        elif number % 3 == 0:
            events.append(pb.InstanceEvent(event_type=number % 7))  # no instance id
        else:
            events.append(pb.InstanceEvent(instance_id=f"ghost-{number}", timestamp_ms=-number))
    batch = pb.RpcRequest(instance_event_batch=pb.InstanceEventBatch(events=events))
    payload = batch.SerializeToString()
    assert len(fz.parse_request(payload).instance_event_batch.events) == 30_000
    background = WellBehaved(fuzz_server.address, seed=2)
    try:
        with background.in_background() as durations:
            started = time.monotonic()
            # 30,000 storage operations in one request: applied before the FIN
            answer = exchange(hostile, fz.frame(payload), timeout=60)
            elapsed = time.monotonic() - started
        assert answer == b""  # applied, then an empty FIN
        stored = fuzz_server.read(
            lambda tx: tx.count_events(instance_id)
        )  # the registration's event plus every custom one
        assert stored == 1 + 1000
        # The batch held one worker; the others kept answering meanwhile.
        assert durations, f"no well-behaved round trip completed during the {elapsed:.1f}s batch"
        assert max(durations) < ANSWER_TIMEOUT / 2, (max(durations), elapsed)
    finally:
        background.close()
        owner.close()
    settled(fuzz_server)


# --- memory ------------------------------------------------------------------------


def _server_stats(loop_client: RpcClient, address, request: mpb.RpcRequest) -> dict[str, float]:
    async def call():
        connection = await Connection.open(*address, timeout=5)
        try:
            reply = await connection.call(request, mpb.RpcResponse, timeout=5)
        finally:
            await connection.close(wait=0.05)
        return dict(reply.get_stats.counters)

    return loop_client.loop.run(call())


hostile_streams = st.lists(
    st.tuples(
        st.one_of(
            fz.small_hostile.stream_contents,
            fz.small_hostile.junk_payloads.map(fz.frame),
            fz.small_hostile.requests.map(fz.request_frame),
        ),
        st.lists(st.integers(0, 10**6), max_size=2),
        st.sampled_from(ENDINGS),
    ),
    min_size=4,
    max_size=8,
)
"""Batches of hostile request streams, sent interleaved on one connection. The
strings and byte fields are short: big ones are the in-process tests' business,
and here they would only make the allocator's high-water mark the measurement."""


def _settled_stats(
    loop_client: RpcClient, address, request: mpb.RpcRequest
) -> dict[str, float] | None:
    """The server's counters if nothing but the GetStats asking for them is in flight."""
    stats = _server_stats(loop_client, address, request)
    quiet = (
        stats["buffered_bytes"] == 0
        and stats["parked"] == 0
        and stats["running"] == 1  # the GetStats itself
        and stats["admitted_bytes"] == request.ByteSize()
    )
    return stats if quiet else None


def test_server_memory_stays_flat_under_hostile_load(tmp_path):
    total = fz.examples(3000)  # hostile requests
    warm_up = max(600, total // 10)
    server = ServerProcess(
        "--management-addr", "127.0.0.1:0", "--max-concurrent", "4", cwd=tmp_path
    )
    clients: list = []
    try:
        report = _hammer(server, clients, total, warm_up)
    finally:
        for client in clients:
            client.close()
        if server.process.poll() is None:
            server.signal(signal.SIGTERM)
        code = server.wait()
    print(f"\nfuzz memory: {report}")
    assert code == 0, server.output()[-2000:]


def _hammer(server: ServerProcess, clients: list, total: int, warm_up: int) -> str:
    pid = server.process.pid
    management = server.management_address()
    stats_request = mpb.RpcRequest(
        get_stats=mpb.GetStatsRequest(), token=server.runtime().read_token
    )
    good = WellBehaved(server.address)
    clients.append(good)
    hostile = RpcClient(server.address, timeout=ANSWER_TIMEOUT)
    clients.append(hostile)
    state = {"sent": 0, "connection": None, "baseline": None, "fresh": 0, "round_trips": 0}
    trajectory: list[str] = []  # RSS at every tenth of the run, for the report

    def connection() -> Connection:
        # a new hostile connection every ~200 requests: connection churn is part of the load
        if state["connection"] is None or state["fresh"] >= 200:
            if state["connection"] is not None:
                hostile.loop.run(state["connection"].close(wait=0.05))
            state["connection"] = hostile.loop.run(
                Connection.open(*server.address, timeout=ANSWER_TIMEOUT)
            )
            state["fresh"] = 0
        return state["connection"]

    async def send(connection: Connection, plans, rng) -> None:
        await _answers(await _run_plans(connection, plans, rng, False), plans)

    # about six streams per example; set here, as the count of requests is what
    # RUNTARA_FUZZ_EXAMPLES means for this test
    @fz.fuzz_settings(0, max_examples=total // 6, phases=[Phase.generate])
    @given(plans=hostile_streams, rng=st.randoms(use_true_random=False))
    def hammer(plans, rng):
        for data, _, _ in plans:
            guard_sleep(None, fz.first_frame(data, fin=False))
        hostile.loop.run(send(connection(), plans, rng), ANSWER_TIMEOUT * (len(plans) + 1))
        state["sent"] += len(plans)
        state["fresh"] += len(plans)
        if state["sent"] // 100 > state["round_trips"]:
            state["round_trips"] += 1
            good.round_trip()
        if state["baseline"] is None and state["sent"] >= warm_up:
            state["baseline"] = memory(pid, "VmRSS")
        if len(trajectory) < 10 and state["sent"] >= (len(trajectory) + 1) * total / 10:
            trajectory.append(f"{memory(pid, 'VmRSS') / MiB:.1f}")

    hammer()
    if state["connection"] is not None:
        hostile.loop.run(state["connection"].close(wait=0.05))
    good.round_trip()
    try:
        stats = wait_for(lambda: _settled_stats(hostile, management, stats_request), timeout=10)
    except AssertionError:
        raise AssertionError(
            f"the server did not settle: {_server_stats(hostile, management, stats_request)}"
        ) from None
    final = memory(pid, "VmRSS")
    peak = memory(pid, "VmHWM")
    baseline = state["baseline"] or final
    assert state["sent"] >= total * 0.8, state["sent"]
    assert final - baseline < 6 * MiB, (
        f"RSS grew {(final - baseline) / MiB:.1f} MiB over {state['sent'] - warm_up} requests"
    )
    return (
        f"{state['sent']} hostile requests, {state['round_trips'] + 1} well-behaved round "
        f"trips; RSS after {warm_up}: {baseline / MiB:.1f} MiB, at the end: "
        f"{final / MiB:.1f} MiB, peak: {peak / MiB:.1f} MiB; at each tenth of the run: "
        f"{', '.join(trajectory)} MiB; counters {stats}"
    )
