"""GetInstanceStatus: an unknown instance is not an error."""

from __future__ import annotations

from runtara import records
from runtara.handlers import mapping
from runtara.handlers.services import Services
from runtara.protocol import instance_pb2 as pb
from runtara.storage import base


def get_instance_status(request: pb.GetInstanceStatusRequest, services: Services) -> pb.RpcResponse:
    instance_id = mapping.require_id(request)

    def work(tx: base.Transaction) -> records.Instance | None:
        instance = tx.get_instance(instance_id)
        if instance is not None:
            tx.update_instance(instance_id, records.InstanceUpdate(last_activity_at=services.now()))
        return instance

    instance = services.storage.run(work)
    reply = pb.GetInstanceStatusResponse(instance_id=instance_id)
    if instance is None:
        reply.status = pb.STATUS_UNKNOWN
        reply.error = "Instance not found"
        return pb.RpcResponse(get_instance_status=reply)
    reply.status = mapping.status_to_wire(instance.status)
    if instance.checkpoint_id is not None:
        reply.checkpoint_id = instance.checkpoint_id
    if instance.started_at is not None:
        reply.started_at_ms = mapping.millis(instance.started_at)
    if instance.finished_at is not None:
        reply.finished_at_ms = mapping.millis(instance.finished_at)
    if instance.output is not None:
        reply.output = instance.output
    if instance.error is not None:
        reply.error = instance.error
    return pb.RpcResponse(get_instance_status=reply)
