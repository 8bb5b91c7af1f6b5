"""Malformed and hostile input over real QUIC: a clear answer, nothing lost, nothing broken."""

from __future__ import annotations

import asyncio
import struct
import time

import pytest

from runtara import errors
from runtara.handlers import dispatch
from runtara.protocol import framing
from runtara.protocol import instance_pb2 as pb
from runtara.protocol.codes import STREAM_FAILED
from tests.support import sqlite_url, wait_for


@pytest.fixture
def database_url(tmp_path):
    """The transport does not depend on the driver: SQLite only (the drivers are
    held to the same rules by the conformance kit)."""
    return sqlite_url(tmp_path)


def request_frame(request: pb.RpcRequest, message_type: int = 1) -> bytes:
    payload = request.SerializeToString()
    return struct.pack(">IH", len(payload), message_type) + payload


def decode_reply(data: bytes) -> pb.RpcResponse:
    decoder = framing.FrameDecoder()
    (frame,) = decoder.feed(data)
    assert frame.message_type == framing.MessageType.RESPONSE
    return pb.RpcResponse.FromString(frame.payload)


def status_frame(instance_id="x"):
    return request_frame(
        pb.RpcRequest(get_instance_status=pb.GetInstanceStatusRequest(instance_id=instance_id))
    )


def assert_still_serving(client, instance_id="still-alive"):
    assert client.register(instance_id).success


def test_a_request_sent_one_byte_per_packet_is_reassembled(client):
    data = request_frame(
        pb.RpcRequest(
            register_instance=pb.RegisterInstanceRequest(instance_id="bytewise", tenant_id="t")
        )
    )

    async def send_bytewise():
        stream = client.connection.open_stream()
        for index in range(len(data)):
            stream.send(data[index : index + 1], end=index == len(data) - 1)
        return await stream.read_to_end()

    reply = decode_reply(client.loop.run(send_bytewise(), 10))
    assert reply.register_instance.success


def test_the_reply_does_not_wait_for_the_clients_fin(client):
    async def without_fin():
        stream = client.connection.open_stream()
        stream.send(status_frame(), end=False)
        return await stream.read_frame()

    frame = client.loop.run(without_fin(), 10)
    assert pb.RpcResponse.FromString(frame.payload).get_instance_status.status == pb.STATUS_UNKNOWN


def test_only_the_first_of_several_frames_on_a_stream_is_answered(server, client):
    data = status_frame("first") + request_frame(
        pb.RpcRequest(
            register_instance=pb.RegisterInstanceRequest(instance_id="second", tenant_id="t")
        )
    )
    reply = decode_reply(client.raw(data))
    assert reply.get_instance_status.instance_id == "first"
    assert server.instance("second") is None


@pytest.mark.parametrize("message_type", [1, 2, 3, 4, 5, 6])
def test_any_valid_frame_type_is_accepted_as_a_request(client, message_type):
    reply = decode_reply(
        client.raw(status_frame().replace(b"\x00\x01", struct.pack(">H", message_type), 1))
    )
    assert reply.WhichOneof("response") == "get_instance_status"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(status_frame()[:-3], id="truncated-payload"),
        pytest.param(b"\x00\x00\x00", id="truncated-header"),
        pytest.param(b"", id="empty-stream"),
        pytest.param(struct.pack(">IH", 3, 0) + b"abc", id="type-zero"),
        pytest.param(struct.pack(">IH", 3, 7) + b"abc", id="type-seven"),
        pytest.param(struct.pack(">IH", 4, 1) + b"\xff\xff\xff\xff", id="invalid-protobuf"),
        pytest.param(struct.pack(">IH", 4, 1) + b"\x0a\x02\xc3\x28", id="invalid-utf8-string"),
        pytest.param(struct.pack(">IH", 2, 1) + b"\x42\x05", id="submessage-overrun"),
    ],
)
def test_bad_frames_end_the_stream_with_no_reply(client, data):
    assert client.raw(data) == b""
    assert_still_serving(client)


def test_an_oversized_length_is_refused_at_once_without_the_payload(client):
    async def oversized():
        stream = client.connection.open_stream()
        stream.send(struct.pack(">IH", framing.MAX_FRAME_SIZE + 1, 1) + b"x" * 1000, end=False)
        data = await stream.read_to_end()
        return data, stream.stop_code

    data, stop_code = client.loop.run(oversized(), 10)
    assert data == b""
    assert stop_code is not None  # the server asked us to stop sending
    assert_still_serving(client)


def test_empty_request_gets_the_upstream_error(client):
    reply = decode_reply(client.raw(request_frame(pb.RpcRequest())))
    assert reply.error.code == "EMPTY_REQUEST"
    assert reply.error.message == "RpcRequest contained no request"


def test_unknown_fields_are_ignored(client):
    payload = (
        pb.RpcRequest(
            get_instance_status=pb.GetInstanceStatusRequest(instance_id="x")
        ).SerializeToString()
        + b"\xf8\x07\x01"
    )  # field 127, varint
    reply = decode_reply(client.raw(struct.pack(">IH", len(payload), 1) + payload))
    assert reply.get_instance_status.instance_id == "x"


@pytest.mark.parametrize(
    ("field", "message", "code"),
    [
        ("checkpoint", pb.CheckpointRequest(checkpoint_id="c"), "CHECKPOINT_ERROR"),
        ("get_checkpoint", pb.GetCheckpointRequest(checkpoint_id="c"), "GET_CHECKPOINT_ERROR"),
        ("get_instance_status", pb.GetInstanceStatusRequest(), "GET_INSTANCE_STATUS_ERROR"),
        ("poll_signals", pb.PollSignalsRequest(), "POLL_SIGNALS_ERROR"),
        ("sleep", pb.SleepRequest(duration_ms=1), "SLEEP_ERROR"),
        ("instance_event", pb.InstanceEvent(), "INSTANCE_EVENT_ERROR"),
    ],
)
def test_empty_instance_ids_are_validation_errors(client, field, message, code):
    reply = client.call(**{field: message})
    assert reply.error.code == code
    assert reply.error.message == "Validation error for 'instance_id': instance_id is required"


def test_no_reply_requests_with_bad_ids_still_just_end(server, client):
    client.ack("", pb.SIGNAL_CANCEL)
    client.ack("ghost", pb.SIGNAL_CANCEL)
    client.no_reply(retry_attempt=pb.RetryAttemptEvent(instance_id="ghost", checkpoint_id="c"))
    client.no_reply(instance_event_batch=pb.InstanceEventBatch())
    assert server.instance("ghost") is None


def test_a_stream_reset_mid_request_stores_nothing_and_breaks_nothing(server, client, running):
    data = request_frame(
        pb.RpcRequest(
            checkpoint=pb.CheckpointRequest(
                instance_id=running, checkpoint_id="half", state=b"x" * 5000
            )
        )
    )

    async def reset_midway():
        stream = client.connection.open_stream()
        stream.send(data[: len(data) // 2])
        await asyncio.sleep(0.05)
        stream.reset(1)
        stream.close()

    client.loop.run(reset_midway(), 10)
    time.sleep(0.1)
    assert server.read(lambda tx: tx.get_checkpoint(running, "half")) is None
    assert not client.checkpoint(running, "after", b"y").HasField("error")


def test_a_client_that_stops_reading_still_gets_its_request_applied(server, client, running):
    client.fire(
        checkpoint=pb.CheckpointRequest(instance_id=running, checkpoint_id="fire", state=b"f")
    )
    wait_for(lambda: server.read(lambda tx: tx.get_checkpoint(running, "fire")))
    assert_still_serving(client)


def test_a_client_that_vanishes_with_requests_in_flight_loses_nothing(server, running):
    doomed = server.client()
    for index in range(20):
        doomed.fire(
            checkpoint=pb.CheckpointRequest(
                instance_id=running, checkpoint_id=f"v{index}", state=b"s"
            )
        )
    doomed.close()
    wait_for(lambda: server.read(lambda tx: tx.count_checkpoints(running)) == 20)
    assert_still_serving(server.client())


def test_requests_on_unidirectional_streams_are_ignored(client):
    async def uni():
        quic = client.connection._protocol._quic
        stream_id = quic.get_next_available_stream_id(is_unidirectional=True)
        quic.send_stream_data(stream_id, status_frame(), end_stream=True)
        client.connection._protocol.transmit()

    client.loop.run(uni(), 5)
    assert_still_serving(client)


def test_a_request_followed_by_junk_in_the_same_chunk_is_still_answered(client):
    reply = decode_reply(client.raw(status_frame("first") + b"\x00\x00\x00\x04\x00\x09junk"))
    assert reply.get_instance_status.instance_id == "first"


def test_an_absurd_sleep_duration_is_a_validation_error(client, running):
    reply = client.call(sleep=pb.SleepRequest(instance_id=running, duration_ms=2**64 - 1))
    assert reply.error.code == "SLEEP_ERROR"
    assert reply.error.message == "Validation error for 'duration_ms': at most 3650 days"


@pytest.mark.parametrize("instance_id", ["\x00leading", "in\x00side"])
def test_ids_with_nul_characters_are_refused_clearly(client, instance_id):
    reply = client.register(instance_id)
    assert not reply.success and reply.error == "instance_id must not contain NUL characters"
    refused = client.checkpoint(instance_id, "cp", b"")
    assert refused.error.message == (
        "Validation error for 'instance_id': instance_id must not contain NUL characters"
    )


def test_nul_in_any_text_field_is_refused_alike_by_every_driver(client, running):
    """PostgreSQL cannot store NUL in text; SQLite could: both refuse it."""
    refused = "Validation error for 'checkpoint_id': checkpoint_id must not contain NUL characters"
    assert client.checkpoint(running, "c\x00p", b"s").error.message == refused
    assert client.get_checkpoint(running, "c\x00p").error.message == refused
    poll = client.call(
        poll_signals=pb.PollSignalsRequest(instance_id=running, checkpoint_id="\x00")
    )
    assert poll.error.message == refused
    tenant = client.register("other", "t\x00")
    assert (tenant.success, tenant.error) == (False, "tenant_id must not contain NUL characters")
    resume = client.call(
        register_instance=pb.RegisterInstanceRequest(
            instance_id=running, tenant_id="tenant", checkpoint_id="c\x00"
        )
    )
    assert resume.register_instance.error == "checkpoint_id must not contain NUL characters"
    event = client.call(
        instance_event=pb.InstanceEvent(
            instance_id=running, event_type=pb.EVENT_CUSTOM, subtype="s\x00"
        )
    )
    assert event.error.message == (
        "Validation error for 'subtype': subtype must not contain NUL characters"
    )
    retry = pb.RpcRequest(
        retry_attempt=pb.RetryAttemptEvent(
            instance_id=running, checkpoint_id="cp", attempt_number=1, error_message="e\x00"
        )
    )
    assert client.raw(request_frame(retry)) == b""  # no-reply: refused and logged
    assert_still_serving(client)


def test_streams_the_client_resets_mid_request_give_their_slot_back(tmp_path):
    from tests.support import LoopbackServer, sqlite_url

    with LoopbackServer(sqlite_url(tmp_path), max_bi_streams=20) as server:
        client = server.client()
        assert client.register("resetter").success

        async def reset_many():
            for _ in range(60):  # three times the connection's stream credit
                stream = client.connection.open_stream()
                stream.send(b"\x00\x00\x00\x10\x00\x01abc")
                await asyncio.sleep(0.005)
                stream.reset(1)
                stream.close()

        client.loop.run(reset_many(), 30)
        assert client.status("resetter").status == pb.STATUS_RUNNING


def test_a_request_failing_outside_its_handler_gets_its_stream_reset(
    server, client, running, monkeypatch
):
    def broken(started, services):
        raise RuntimeError("a bug after the sleep")

    monkeypatch.setattr(dispatch, "finish_sleep", broken)

    async def sleep_briefly():
        stream = client.connection.open_stream()
        stream.send(
            request_frame(pb.RpcRequest(sleep=pb.SleepRequest(instance_id=running))), end=True
        )
        with pytest.raises(errors.ConnectionLost):
            await stream.read_frame()
        return stream.reset_code

    assert client.loop.run(sleep_briefly(), 10) == STREAM_FAILED
    monkeypatch.undo()
    assert_still_serving(client)
