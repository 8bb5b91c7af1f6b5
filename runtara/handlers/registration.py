"""RegisterInstance (README: Protocol behaviour).

Registration never answers with an RpcError: every refusal is
``success=false`` with a reason.
"""

from __future__ import annotations

from runtara import errors, records
from runtara.handlers import mapping
from runtara.handlers.services import Services
from runtara.protocol import instance_pb2 as pb
from runtara.storage import base


class _Refused(Exception):
    """Registration is refused; the transaction is rolled back."""


def register_instance(request: pb.RegisterInstanceRequest, services: Services) -> pb.RpcResponse:
    def refuse(reason: str) -> pb.RpcResponse:
        return pb.RpcResponse(
            register_instance=pb.RegisterInstanceResponse(success=False, error=reason)
        )

    instance_id = request.instance_id
    tenant_id = request.tenant_id
    for name, value in (("instance_id", instance_id), ("tenant_id", tenant_id)):
        if not value:
            return refuse(f"{name} is required")
    field = mapping.field_with_nul(request)
    if field is not None:
        return refuse(f"{field} must not contain NUL characters")
    checkpoint_id = request.checkpoint_id if request.HasField("checkpoint_id") else None

    def work(tx: base.Transaction) -> None:
        now = services.now()
        instance = tx.get_instance(instance_id)
        if instance is None:
            if checkpoint_id is not None:
                raise _Refused(str(errors.CheckpointNotFound(checkpoint_id)))
            tx.create_instance(instance_id, tenant_id, now)
        else:
            if instance.tenant_id != tenant_id:
                raise _Refused(str(errors.TenantMismatch(instance_id)))
            if instance.status.is_terminal:
                raise _Refused(
                    f"{errors.InstanceFinished(instance_id, instance.status.value)}; "
                    "start a new instance id instead"
                )
            if checkpoint_id is not None and tx.get_checkpoint(instance_id, checkpoint_id) is None:
                raise _Refused(str(errors.CheckpointNotFound(checkpoint_id)))
        tx.update_instance(
            instance_id,
            records.InstanceUpdate(
                status=records.InstanceStatus.RUNNING,
                started_at=now,
                sleep_until=None,
                last_activity_at=now,
            ),
        )
        tx.insert_event(
            records.Event(
                instance_id=instance_id,
                event_type=records.EventType.STARTED,
                created_at=now,
                checkpoint_id=checkpoint_id,
            )
        )

    try:
        services.storage.run(work)
    except _Refused as refusal:
        return refuse(str(refusal))
    except errors.StorageError as error:
        return refuse(f"Failed to register instance: {error}")
    return pb.RpcResponse(register_instance=pb.RegisterInstanceResponse(success=True))
