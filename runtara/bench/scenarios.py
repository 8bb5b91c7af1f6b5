"""What each scenario's instances send, and when a reply counts as a failure.

The same requests go over QUIC (the network load and the ``echo`` and
``naive`` baselines) and straight to the handlers (the ``storage``
baseline), so every baseline of a scenario runs that scenario's mix.
"""

from __future__ import annotations

from collections.abc import Iterator

from runtara.protocol import instance_pb2 as pb

SCENARIOS = ("checkpoint", "resume", "lifecycle", "large")
TENANT = "bench"
RESUME_IDS = 50
"""Checkpoint ids each ``resume`` instance saves first and then saves again in turn."""
STATE_SIZE = 1024
LARGE_STATE_SIZE = 64 * 1024


def state_size(scenario: str, chosen: int | None) -> int:
    """Checkpoint state bytes: ``chosen`` when given, else 64 KiB for ``large`` and
    1 KiB for the others."""
    if chosen is not None:
        return chosen
    return LARGE_STATE_SIZE if scenario == "large" else STATE_SIZE


def preparation(scenario: str, instance_id: str, state: bytes) -> list[pb.RpcRequest]:
    """What one instance sends before its load starts (not measured)."""
    prepared = [
        pb.RpcRequest(
            register_instance=pb.RegisterInstanceRequest(instance_id=instance_id, tenant_id=TENANT)
        )
    ]
    if scenario == "resume":
        prepared += [
            _checkpoint(instance_id, f"resume-{index}", state) for index in range(RESUME_IDS)
        ]
    return prepared


def requests(scenario: str, instance_id: str, state: bytes) -> Iterator[pb.RpcRequest]:
    """The endless requests of one instance, one at a time in this order.

    ``checkpoint`` and ``large``: checkpoints of new ids; ``resume``: checkpoints
    of the ids saved by :func:`preparation`, in turn; ``lifecycle``: instances
    of their own, each registered, given three checkpoints, polled, sent a
    heartbeat and completed.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}")
    if scenario == "lifecycle":
        return _lifecycles(instance_id, state)
    if scenario == "resume":
        return _checkpoints(instance_id, state, lambda n: f"resume-{n % RESUME_IDS}")
    return _checkpoints(instance_id, state, lambda n: f"cp-{n}")


def failure(reply: pb.RpcResponse) -> str | None:
    """Why a reply says its request failed, or None when it succeeded.

    An ``RpcError`` fails, and so does a registration or an event the server
    answers with ``success=false`` (refusals that are not errors on the wire).
    """
    kind = reply.WhichOneof("response")
    if kind == "error":
        return f"{reply.error.code}: {reply.error.message}"
    if kind == "register_instance" and not reply.register_instance.success:
        return f"registration refused: {reply.register_instance.error}"
    if kind == "instance_event" and not reply.instance_event.success:
        return f"event refused: {reply.instance_event.error}"
    return None


def _checkpoint(instance_id: str, checkpoint_id: str, state: bytes) -> pb.RpcRequest:
    return pb.RpcRequest(
        checkpoint=pb.CheckpointRequest(
            instance_id=instance_id, checkpoint_id=checkpoint_id, state=state
        )
    )


def _checkpoints(instance_id: str, state: bytes, checkpoint_id) -> Iterator[pb.RpcRequest]:
    sequence = 0
    while True:
        sequence += 1
        yield _checkpoint(instance_id, checkpoint_id(sequence), state)


def _lifecycles(instance_id: str, state: bytes) -> Iterator[pb.RpcRequest]:
    generation = 0
    while True:
        generation += 1
        life = f"{instance_id}-{generation}"
        yield pb.RpcRequest(
            register_instance=pb.RegisterInstanceRequest(instance_id=life, tenant_id=TENANT)
        )
        for step in range(3):
            yield _checkpoint(life, f"step-{step}", state)
        yield pb.RpcRequest(poll_signals=pb.PollSignalsRequest(instance_id=life))
        yield pb.RpcRequest(
            instance_event=pb.InstanceEvent(instance_id=life, event_type=pb.EVENT_HEARTBEAT)
        )
        yield pb.RpcRequest(
            instance_event=pb.InstanceEvent(
                instance_id=life, event_type=pb.EVENT_COMPLETED, payload=b"{}"
            )
        )
