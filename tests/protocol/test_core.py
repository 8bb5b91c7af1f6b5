"""The serving rules the core decides: admission, overload, refusals, eviction, expiry."""

from __future__ import annotations

import attrs

from runtara import records
from runtara.credentials import Credentials
from runtara.protocol import codes, framing, streams
from runtara.protocol import instance_pb2 as pb
from runtara.protocol import management_pb2 as mpb
from runtara.server import core, handling
from tests.protocol.harness import INSTANCE, LIMITS, CoreServer


def frame(**oneof) -> bytes:
    request = pb.RpcRequest(**oneof)
    return framing.encode_frame(request.SerializeToString(), framing.MessageType.REQUEST)


def status_frame(instance_id="inst-1") -> bytes:
    return frame(get_instance_status=pb.GetInstanceStatusRequest(instance_id=instance_id))


def reply_of(server, client, stream_id) -> pb.RpcResponse:
    answer = server.answered(client, stream_id)
    (decoded,) = framing.FrameDecoder().feed(answer.frame)
    return pb.RpcResponse.FromString(decoded.payload)


def test_connections_beyond_the_limit_are_refused_with_a_reason():
    server = CoreServer(attrs.evolve(LIMITS, max_connections=2))
    server.client(), server.client()
    assert server.core.connection_opened(object(), INSTANCE, "x") == "too many connections"


def test_handshakes_in_progress_are_capped():
    server = CoreServer(attrs.evolve(LIMITS, max_incoming=2))
    for _ in range(2):
        assert server.core.connection_opened(object(), INSTANCE, "x") is None
    assert server.core.connection_opened(object(), INSTANCE, "x") == (
        "too many handshakes in progress"
    )


def test_requests_beyond_workers_and_parking_are_answered_overloaded():
    server = CoreServer(attrs.evolve(LIMITS, workers=1, max_pending=1))
    client = server.client()
    server.hold_work = True
    first, second, third = (client.send(status_frame()) for _ in range(3))
    assert server.stats()["running"] == 1 and server.stats()["parked"] == 1
    refused = reply_of(server, client, third)
    assert refused.error.code == codes.OVERLOADED
    assert "1 requests running and 1 waiting" in refused.error.message
    server.release()
    assert reply_of(server, client, first).HasField("get_instance_status")
    assert reply_of(server, client, second).HasField("get_instance_status")
    assert server.stats() == {**server.stats(), "running": 0, "parked": 0, "rejected": 1}


def test_no_reply_requests_refused_under_overload_have_their_stream_reset():
    server = CoreServer(attrs.evolve(LIMITS, workers=1, max_pending=0))
    client = server.client()
    server.hold_work = True
    client.send(status_frame())
    ack = client.send(frame(signal_ack=pb.SignalAck(instance_id="inst-1", acknowledged=True)))
    assert server.answered(client, ack).reset == codes.STREAM_OVERLOADED


def test_admitted_payload_bytes_are_capped():
    server = CoreServer(attrs.evolve(LIMITS, max_inflight_bytes=100_000))
    client = server.client()
    assert client.register("big").success
    server.hold_work = True
    state = bytes(60_000)
    checkpoint = pb.CheckpointRequest(instance_id="big", checkpoint_id="a", state=state)
    first = client.send(frame(checkpoint=checkpoint))
    second = client.send(frame(checkpoint=checkpoint))
    assert reply_of(server, client, second).error.code == codes.OVERLOADED
    assert server.stats()["admitted_bytes"] > 60_000
    server.release()
    assert not reply_of(server, client, first).HasField("error")
    assert server.stats()["admitted_bytes"] == 0


def test_requests_during_shutdown_are_refused_unavailable_and_running_ones_finish():
    server = CoreServer()
    client = server.client()
    server.hold_work = True
    running = client.send(status_frame())
    server.perform(server.core.stop_accepting())
    late = reply_of(server, client, client.send(status_frame()))
    assert late.error.code == codes.UNAVAILABLE
    assert not server.core.idle
    server.release()
    assert server.core.idle and server.answered(client, running).finished
    assert server.core.connection_opened(object(), INSTANCE, "x") == "server closing"


def test_an_empty_request_is_an_error_reply():
    server = CoreServer()
    client = server.client()
    empty = framing.encode_frame(pb.RpcRequest().SerializeToString(), framing.MessageType.REQUEST)
    assert reply_of(server, client, client.send(empty)).error.code == codes.EMPTY_REQUEST


def test_bytes_that_are_not_a_request_end_the_stream_and_ask_the_client_to_stop():
    server = CoreServer()
    client = server.client()
    junk = framing.encode_frame(b"\xff\xff\xff", framing.MessageType.REQUEST)
    assert server.answered(client, client.send(junk)).rejected
    oversized = framing.HEADER.pack(framing.MAX_FRAME_SIZE + 1, 1)
    assert server.answered(client, client.send(oversized, end=False)).rejected
    assert client.status("x").status == pb.STATUS_UNKNOWN  # the connection carries on


def test_unidirectional_streams_are_stopped_and_ignored():
    server = CoreServer()
    client = server.client()
    actions = server.core.stream_data(client, 2, status_frame(), True, 0.0)
    assert actions == [core.StopStream(client, 2)]
    assert server.core.stream_data(client, 6, b"", True, 0.0) == []
    assert server.stats()["completed"] == 0


CREDENTIALS = Credentials(read="read-0123456789abcdef", operate="operate-0123456789abcdef")


def management_request(operator, token, **oneof):
    return operator.request(mpb.RpcRequest(token=token, **oneof), mpb.RpcResponse)


def test_management_requests_need_a_credential_and_acting_the_operate_one():
    server = CoreServer(credentials=CREDENTIALS)
    operator = server.client(server.management)
    health = {"health_check": mpb.HealthCheckRequest()}
    assert management_request(operator, "", **health).error.code == codes.UNAUTHENTICATED
    assert management_request(operator, "wrong", **health).error.code == codes.UNAUTHENTICATED
    assert management_request(operator, CREDENTIALS.read, **health).health_check.healthy
    assert management_request(operator, CREDENTIALS.operate, **health).health_check.healthy
    cancel = {"send_signal": mpb.SendSignalRequest(instance_id="x")}
    denied = management_request(operator, CREDENTIALS.read, **cancel)
    assert denied.error.code == codes.PERMISSION_DENIED
    allowed = management_request(operator, CREDENTIALS.operate, **cancel)
    assert allowed.send_signal.error == "Instance 'x' not found"


def test_a_source_that_fails_ten_checks_is_refused_until_its_minute_ends():
    server = CoreServer(credentials=CREDENTIALS)
    guesser = server.client(server.management, address="10.0.0.9:4000")
    other = server.client(server.management, address="10.0.0.8:4000")
    stats = {"get_stats": mpb.GetStatsRequest()}
    for guess in range(10):
        server.loop_time = guess
        assert management_request(guesser, f"guess-{guess}", **stats).error.code == (
            codes.UNAUTHENTICATED
        )
    locked = management_request(guesser, CREDENTIALS.operate, **stats)
    assert "too many failed credential checks from 10.0.0.9" in locked.error.message
    # another port of the same address is the same source; another address is not
    same = server.client(server.management, address="10.0.0.9:4001")
    assert management_request(same, CREDENTIALS.operate, **stats).error.code == (
        codes.UNAUTHENTICATED
    )
    assert management_request(other, CREDENTIALS.read, **stats).HasField("get_stats")
    server.loop_time = 60  # the minute that began with the first failure is over
    assert management_request(guesser, CREDENTIALS.read, **stats).HasField("get_stats")


def test_a_reset_stream_gets_no_reply_but_its_request_is_applied():
    server = CoreServer()
    client = server.client()
    assert client.register("inst-1").success
    server.hold_work = True
    stream_id = client.send(
        frame(checkpoint=pb.CheckpointRequest(instance_id="inst-1", checkpoint_id="cp"))
    )
    assert server.core.stream_reset(client, stream_id) == []
    server.release()
    assert server.read(lambda tx: tx.get_checkpoint("inst-1", "cp")) is not None


def test_a_reset_before_the_request_arrived_whole_is_answered_with_a_reset():
    server = CoreServer()
    client = server.client()
    stream_id = client.send(status_frame()[:5], end=False)
    actions = server.core.stream_reset(client, stream_id)
    assert actions == [core.ResetStream(client, stream_id, codes.STREAM_REJECTED)]
    assert server.stats()["buffered_bytes"] == 0


def test_requests_that_stall_half_way_expire():
    server = CoreServer()
    client = server.client()
    stalled = client.send(status_frame()[:7], end=False)
    assert server.core.expire(10.0, 60.0) == []
    assert server.core.expire(60.0, 60.0) == [core.RejectStream(client, stalled)]


def test_when_the_server_wide_budget_runs_out_the_largest_holder_is_evicted():
    server = CoreServer(attrs.evolve(LIMITS, max_total_buffer=6 * streams.STREAM_OVERHEAD))
    hog, modest = server.client(), server.client()
    for _ in range(4):
        hog.send(status_frame()[:5], end=False)
    modest.send(status_frame()[:5], end=False)
    over = modest.send(status_frame()[:5], end=False)
    assert server.answered(modest, over).rejected
    assert server.closed == {hog: (codes.CONNECTION_EVICTED, "too many unfinished requests")}
    assert modest not in server.closed


def test_a_reply_too_large_for_a_frame_is_an_error_reply_not_silence():
    server = CoreServer()
    client = server.client()
    assert client.register("big").success
    huge = bytes(framing.MAX_FRAME_SIZE - 1024)
    now = server.clock.now()

    def setup(tx):
        tx.insert_checkpoint("big", "cp", huge, now)
        tx.put_custom_signal("big", "cp", bytes(1024 * 1024), now)

    server.storage.run(setup)
    reply = client.checkpoint("big", "cp")
    assert reply.error.code == "CHECKPOINT_ERROR"
    assert reply.error.message.startswith("the reply would not fit in a frame")


def test_a_failure_outside_the_handler_resets_the_stream(monkeypatch):
    server = CoreServer()
    client = server.client()
    assert client.register("inst-1").success

    def broken(*args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(handling, "_encode", broken)
    stream_id = client.send(status_frame())
    assert server.answered(client, stream_id).reset == codes.STREAM_FAILED
    monkeypatch.undo()
    assert client.status("inst-1").status == pb.STATUS_RUNNING


def test_parked_work_starts_when_a_worker_frees_up_in_order():
    server = CoreServer(attrs.evolve(LIMITS, workers=1))
    client = server.client()
    assert client.register("inst-1").success
    server.hold_work = True
    ids = [
        client.send(
            frame(checkpoint=pb.CheckpointRequest(instance_id="inst-1", checkpoint_id=f"c{n}"))
        )
        for n in range(3)
    ]
    assert server.stats()["parked"] == 2
    server.release()
    assert all(server.answered(client, i).finished for i in ids)
    listed = server.read(lambda tx: tx.list_checkpoints("inst-1"))
    assert [c.checkpoint_id for c in reversed(listed)] == ["c0", "c1", "c2"]
    assert server.instance("inst-1").status is records.InstanceStatus.RUNNING
