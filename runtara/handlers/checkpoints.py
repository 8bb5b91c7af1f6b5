"""Checkpoint, GetCheckpoint and RetryAttempt.

A checkpoint id is saved once: the first state stored under it is the state,
and every later Checkpoint of that id (including concurrent first ones) reads
it back with ``found=true``.
"""

from __future__ import annotations

from runtara import errors, records
from runtara.handlers import mapping
from runtara.handlers.services import Services
from runtara.protocol import instance_pb2 as pb
from runtara.storage import base


def require_instance(tx: base.Transaction, instance_id: str) -> records.Instance:
    instance = tx.get_instance(instance_id)
    if instance is None:
        raise errors.InstanceNotFound(instance_id)
    return instance


def require_running(instance: records.Instance) -> None:
    if instance.status is not records.InstanceStatus.RUNNING:
        raise errors.InvalidInstanceState(
            instance.instance_id, records.InstanceStatus.RUNNING.value, instance.status.value
        )


def checkpoint(request: pb.CheckpointRequest, services: Services) -> pb.RpcResponse:
    instance_id = mapping.require_id(request)
    checkpoint_id = request.checkpoint_id

    def work(tx: base.Transaction) -> pb.CheckpointResponse:
        now = services.now()
        require_running(require_instance(tx, instance_id))
        reply = pb.CheckpointResponse()
        if tx.insert_checkpoint(instance_id, checkpoint_id, request.state, now):
            update = records.InstanceUpdate(checkpoint_id=checkpoint_id, last_activity_at=now)
        else:
            stored = tx.get_checkpoint(instance_id, checkpoint_id)
            reply.found = True
            reply.state = stored.state
            update = records.InstanceUpdate(last_activity_at=now)
        tx.update_instance(instance_id, update)
        signal = tx.get_pending_signal(instance_id)
        if signal is not None:
            reply.pending_signal.CopyFrom(mapping.signal_message(signal))
        custom = tx.take_custom_signal(instance_id, checkpoint_id)
        if custom is not None:
            reply.custom_signal.CopyFrom(mapping.custom_signal_message(custom))
        return reply

    return pb.RpcResponse(checkpoint=services.storage.run(work))


def get_checkpoint(request: pb.GetCheckpointRequest, services: Services) -> pb.RpcResponse:
    instance_id = mapping.require_id(request)

    def work(tx: base.Transaction) -> pb.GetCheckpointResponse:
        require_instance(tx, instance_id)
        tx.update_instance(instance_id, records.InstanceUpdate(last_activity_at=services.now()))
        stored = tx.get_checkpoint(instance_id, request.checkpoint_id)
        if stored is None:
            return pb.GetCheckpointResponse(found=False)
        return pb.GetCheckpointResponse(found=True, state=stored.state)

    return pb.RpcResponse(get_checkpoint=services.storage.run(work))


def retry_attempt(request: pb.RetryAttemptEvent, services: Services) -> None:
    instance_id = mapping.require_id(request)
    error_message = request.error_message if request.HasField("error_message") else None

    def work(tx: base.Transaction) -> None:
        now = services.now()
        require_instance(tx, instance_id)
        tx.save_retry_attempt(
            instance_id, request.checkpoint_id, request.attempt_number, error_message, now
        )
        tx.update_instance(instance_id, records.InstanceUpdate(last_activity_at=now))

    services.storage.run(work)
