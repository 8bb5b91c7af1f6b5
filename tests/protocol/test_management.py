"""The management protocol's operations, on the core."""

from __future__ import annotations

import pytest

from runtara import errors, limits, records
from runtara.admin.local import LocalAdmin
from runtara.protocol import management_pb2 as mpb


@pytest.fixture
def operator(server):
    return server.client(server.management)


def manage(operator, **oneof) -> mpb.RpcResponse:
    return operator.request(mpb.RpcRequest(**oneof), mpb.RpcResponse)


def largest_payload(checkpoint_id: str) -> int:
    size = limits.MAX_FRAME_SIZE
    while limits.signal_reply_size(checkpoint_id, size) > limits.MAX_FRAME_SIZE:
        size -= 1
    return size


def test_a_custom_signal_that_could_never_be_delivered_is_refused_when_sent(
    server, client, running
):
    admin = LocalAdmin(server.storage, server.clock.now)
    largest = largest_payload("approve")
    with pytest.raises(errors.OperationRefused) as refused:
        admin.send_custom_signal(running, "approve", bytes(largest + 1))
    assert f"at most {largest} bytes" in str(refused.value) and "64 MiB" in str(refused.value)
    assert server.read(lambda tx: tx.list_custom_signals(running)) == []
    admin.send_custom_signal(running, "approve", bytes(largest))
    delivered = client.poll(running, "approve")  # the largest one fits in a reply exactly
    assert len(delivered.custom_signal.payload) == largest


def test_an_instance_wide_signal_too_large_to_deliver_is_refused(server, running):
    admin = LocalAdmin(server.storage, server.clock.now)
    with pytest.raises(errors.OperationRefused, match="could never be delivered"):
        admin.send_signal(running, records.SignalType.PAUSE, bytes(limits.MAX_FRAME_SIZE))
    assert server.read(lambda tx: tx.get_pending_signal(running)) is None


def test_signals_through_the_management_service_follow_the_rules(operator, running):
    def send(instance_id, payload=b"p"):
        return manage(
            operator,
            send_custom_signal=mpb.SendCustomSignalRequest(
                instance_id=instance_id, checkpoint_id="cp", payload=payload
            ),
        ).send_custom_signal

    assert send(running).success
    assert not send("ghost").success and "not found" in send("ghost").error


def test_health_reports_the_storage_problem_of_the_last_failures(server, operator):
    assert manage(operator, health_check=mpb.HealthCheckRequest()).health_check.healthy
    server.storage.close()  # the memory store is gone: every operation fails
    client = server.client()
    assert client.checkpoint("x", "cp").error.code == "CHECKPOINT_ERROR"
    health = manage(operator, health_check=mpb.HealthCheckRequest()).health_check
    assert not health.healthy and "no tables" in health.error
