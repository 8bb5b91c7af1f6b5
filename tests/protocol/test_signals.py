"""PollSignals, SignalAck and signals in Checkpoint replies."""

from __future__ import annotations

import datetime as dt

from runtara import records
from runtara.protocol import instance_pb2 as pb

CANCEL, PAUSE, RESUME = (
    records.SignalType.CANCEL,
    records.SignalType.PAUSE,
    records.SignalType.RESUME,
)


def now():
    return dt.datetime.now(dt.timezone.utc)


def send(server, instance_id, signal_type, payload=b""):
    server.storage.run(lambda tx: tx.put_signal(instance_id, signal_type, payload, now()))


def send_custom(server, instance_id, checkpoint_id, payload=b""):
    server.storage.run(lambda tx: tx.put_custom_signal(instance_id, checkpoint_id, payload, now()))


def test_no_signal_pending(client, running):
    reply = client.poll(running)
    assert not reply.HasField("signal") and not reply.HasField("custom_signal")


def test_poll_returns_the_signal_with_its_payload_and_does_not_consume_it(server, client, running):
    send(server, running, CANCEL, b"user asked")
    for _ in range(2):
        reply = client.poll(running)
        assert reply.signal.signal_type == pb.SIGNAL_CANCEL
        assert reply.signal.payload == b"user asked"
        assert reply.signal.instance_id == running


def test_each_signal_type_has_its_wire_number(server, client, running):
    for kind, number in ((CANCEL, 0), (PAUSE, 1), (RESUME, 2)):
        send(server, running, kind)
        assert client.poll(running).signal.signal_type == number


def test_empty_payload_signal(server, client, running):
    send(server, running, PAUSE)
    assert client.poll(running).signal.payload == b""


def test_poll_of_an_unknown_instance_is_an_empty_reply(client):
    reply = client.call(poll_signals=pb.PollSignalsRequest(instance_id="ghost"))
    assert reply.WhichOneof("response") == "poll_signals"
    assert not reply.poll_signals.HasField("signal")


def test_cancel_ack_clears_the_signal_and_cancels_the_instance(server, client, running):
    send(server, running, CANCEL, b"stop")
    client.ack(running, pb.SIGNAL_CANCEL)  # persisted by the time the FIN arrives
    instance = server.instance(running)
    assert instance.status is records.InstanceStatus.CANCELLED
    assert instance.finished_at is not None
    assert not client.poll(running).HasField("signal")


def test_acknowledged_signals_are_not_delivered_again_by_checkpoint_either(server, client, running):
    send(server, running, PAUSE)
    assert (
        client.checkpoint(running, "cp", b"").checkpoint.pending_signal.signal_type
        == pb.SIGNAL_PAUSE
    )
    client.ack(running, pb.SIGNAL_PAUSE)
    assert not client.checkpoint(running, "cp", b"").checkpoint.HasField("pending_signal")
    assert server.instance(running).status is records.InstanceStatus.RUNNING


def test_unacknowledged_ack_changes_nothing(server, client, running):
    send(server, running, CANCEL)
    client.ack(running, pb.SIGNAL_CANCEL, acknowledged=False)
    assert server.instance(running).status is records.InstanceStatus.RUNNING
    assert client.poll(running).HasField("signal")


def test_ack_of_another_type_leaves_the_newer_signal_pending(server, client, running):
    send(server, running, PAUSE)
    send(server, running, CANCEL)  # replaces the pause before its ack arrives
    client.ack(running, pb.SIGNAL_PAUSE)
    assert client.poll(running).signal.signal_type == pb.SIGNAL_CANCEL


def test_unknown_ack_type_counts_as_cancel(server, client, running):
    send(server, running, CANCEL)
    client.ack(running, 7)
    assert server.instance(running).status is records.InstanceStatus.CANCELLED


def test_cancel_ack_leaves_a_finished_instance_as_it_is(server, client, running):
    client.event(running, pb.EVENT_COMPLETED, b"out")
    client.ack(running, pb.SIGNAL_CANCEL)
    instance = server.instance(running)
    assert instance.status is records.InstanceStatus.COMPLETED and instance.output == b"out"


def test_pause_then_cancel_delivers_only_the_cancel(server, client, running):
    send(server, running, PAUSE)
    send(server, running, CANCEL)
    assert client.poll(running).signal.signal_type == pb.SIGNAL_CANCEL


def test_a_new_signal_re_arms_after_an_ack(server, client, running):
    send(server, running, PAUSE)
    client.ack(running, pb.SIGNAL_PAUSE)
    send(server, running, RESUME)
    assert client.poll(running).signal.signal_type == pb.SIGNAL_RESUME


def test_checkpoint_saved_before_a_cancel_stays_readable(server, client, running):
    client.checkpoint(running, "cp", b"before")
    send(server, running, CANCEL)
    client.ack(running, pb.SIGNAL_CANCEL)
    assert client.get_checkpoint(running, "cp").get_checkpoint.state == b"before"


def test_checkpoint_reply_carries_the_pending_cancel(server, client, running):
    send(server, running, CANCEL, b"why")
    reply = client.checkpoint(running, "cp", b"").checkpoint
    assert (
        reply.pending_signal.signal_type == pb.SIGNAL_CANCEL
        and reply.pending_signal.payload == b"why"
    )


def test_custom_signal_is_taken_once_by_checkpoint_of_the_same_id(server, client, running):
    send_custom(server, running, "approval", b"yes")
    assert not client.checkpoint(running, "other", b"").checkpoint.HasField("custom_signal")
    reply = client.checkpoint(running, "approval", b"").checkpoint
    assert reply.custom_signal.checkpoint_id == "approval" and reply.custom_signal.payload == b"yes"
    assert not client.checkpoint(running, "approval", b"").checkpoint.HasField("custom_signal")


def test_custom_signal_is_taken_by_poll_only_with_its_checkpoint_id(server, client, running):
    send_custom(server, running, "approval", b"ok")
    assert not client.poll(running).HasField("custom_signal")
    reply = client.poll(running, "approval")
    assert reply.custom_signal.checkpoint_id == "approval" and reply.custom_signal.payload == b"ok"
    assert not client.poll(running, "approval").HasField("custom_signal")


def test_poll_can_return_both_kinds_at_once(server, client, running):
    send(server, running, PAUSE)
    send_custom(server, running, "cp", b"data")
    reply = client.poll(running, "cp")
    assert reply.HasField("signal") and reply.HasField("custom_signal")


def test_signals_wait_for_pending_and_suspended_instances(server, client):
    server.storage.run(lambda tx: tx.create_instance("waiting", "tenant", now()))
    send(server, "waiting", CANCEL, b"before start")
    assert server.read(lambda tx: tx.get_pending_signal("waiting")).payload == b"before start"
    client.register("waiting")
    assert client.poll("waiting").signal.payload == b"before start"
    client.event("waiting", pb.EVENT_SUSPENDED)
    send(server, "waiting", CANCEL, b"while suspended")
    stored = server.read(lambda tx: tx.get_pending_signal("waiting"))
    assert stored.signal_type is CANCEL
