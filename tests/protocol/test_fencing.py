"""Never two copies progressing: the newest registration wins, the others are refused."""

from __future__ import annotations

from runtara import records
from runtara.protocol import codes
from runtara.protocol import instance_pb2 as pb


def test_each_registration_gets_a_higher_number(server, client):
    first = client.register("order-17")
    second = server.client().register("order-17")
    assert first.success and second.success
    assert second.registration == first.registration + 1


def test_registering_again_on_the_same_connection_keeps_the_number(client):
    first = client.register("order-17")
    again = client.register("order-17")
    assert again.success and again.registration == first.registration


def test_a_superseded_process_cannot_register_again(server):
    old, new = server.client(), server.client()
    assert old.register("order-17").success
    assert new.register("order-17").success
    refused = old.call(
        register_instance=pb.RegisterInstanceRequest(instance_id="order-17", tenant_id="tenant")
    )
    assert refused.error.code == codes.SUPERSEDED
    assert "registered again by another process" in refused.error.message


def test_a_superseded_connection_can_neither_progress_nor_end_the_instance(server):
    old, new = server.client(), server.client()
    assert old.register("order-17").success
    assert not old.checkpoint("order-17", "step-1", b"old").HasField("error")
    assert new.register("order-17").success
    refused = old.checkpoint("order-17", "step-2", b"old")
    assert refused.error.code == codes.SUPERSEDED
    assert "registered again by another process" in refused.error.message
    assert old.event("order-17", pb.EVENT_COMPLETED, b"old").error.code == codes.SUPERSEDED
    assert old.event("order-17", pb.EVENT_FAILED, b"boom").error.code == codes.SUPERSEDED
    old.ack("order-17", pb.SIGNAL_CANCEL)  # no reply either way; it must change nothing
    assert not new.checkpoint("order-17", "step-2", b"new").HasField("error")
    instance = server.instance("order-17")
    assert instance.status is records.InstanceStatus.RUNNING
    assert instance.checkpoint_id == "step-2"
    assert server.read(lambda tx: tx.get_checkpoint("order-17", "step-2")).state == b"new"


def test_a_superseded_connection_takes_no_custom_signal(server):
    old, new = server.client(), server.client()
    assert old.register("approval").success
    assert new.register("approval").success
    now = server.clock.now()
    server.storage.run(lambda tx: tx.put_custom_signal("approval", "decide", b"yes", now))
    assert (
        old.call(
            poll_signals=pb.PollSignalsRequest(instance_id="approval", checkpoint_id="decide")
        ).error.code
        == codes.SUPERSEDED
    )
    assert new.poll("approval", "decide").custom_signal.payload == b"yes"


def test_a_named_registration_holds_on_any_connection(server):
    first = server.client()
    registration = first.register("order-17").registration
    first.close()
    again = server.client()  # a reconnection: this connection registered nothing

    def checkpoint(number, checkpoint_id):
        return again.request(
            pb.RpcRequest(
                checkpoint=pb.CheckpointRequest(
                    instance_id="order-17", checkpoint_id=checkpoint_id
                ),
                registration=number,
            )
        )

    assert not checkpoint(registration, "a").HasField("error")
    assert server.client().register("order-17").success  # a newer process
    assert checkpoint(registration, "b").error.code == codes.SUPERSEDED


def test_a_request_naming_no_registration_on_a_connection_that_registered_none_is_served(server):
    # What an upstream client that reconnected sends: it cannot be told apart.
    first = server.client()
    assert first.register("order-17").success
    other = server.client()
    assert not other.checkpoint("order-17", "cp").HasField("error")


def test_registration_numbers_survive_in_the_store(server, client):
    assert client.register("order-17").registration == 1
    assert server.instance("order-17").registration == 1
    assert server.client().register("order-17").registration == 2
