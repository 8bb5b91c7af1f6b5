"""InstanceEvent and InstanceEventBatch (README: Protocol behaviour).

Completed, failed and cancelled are final: an exact repeat of the final event
is accepted and changes nothing, any other status-changing event is refused;
heartbeats and custom events are still recorded. Event times are the server's.
"""

from __future__ import annotations

import logging

from runtara import errors, records
from runtara.handlers import mapping
from runtara.handlers.checkpoints import require_instance
from runtara.handlers.services import Services
from runtara.protocol import instance_pb2 as pb
from runtara.storage import base

logger = logging.getLogger(__name__)

_STATUS_CHANGING = frozenset(
    {records.EventType.COMPLETED, records.EventType.FAILED, records.EventType.SUSPENDED}
)


def failure_text(payload: bytes) -> str:
    if not payload:
        return "Unknown error"
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return "Unknown error (binary payload)"


def _repeats_final_event(
    instance: records.Instance, kind: records.EventType, payload: bytes
) -> bool:
    if kind is records.EventType.COMPLETED:
        return instance.status is records.InstanceStatus.COMPLETED and instance.output == (
            payload or None
        )
    if kind is records.EventType.FAILED:
        return instance.status is records.InstanceStatus.FAILED and instance.error == failure_text(
            payload
        )
    return False


def _status_update(kind: records.EventType, payload: bytes, now) -> records.InstanceUpdate:
    if kind is records.EventType.COMPLETED:
        return records.InstanceUpdate(
            status=records.InstanceStatus.COMPLETED,
            finished_at=now,
            output=payload or None,
            error=None,
            sleep_until=None,
            last_activity_at=now,
        )
    if kind is records.EventType.FAILED:
        return records.InstanceUpdate(
            status=records.InstanceStatus.FAILED,
            finished_at=now,
            output=None,
            error=failure_text(payload),
            sleep_until=None,
            last_activity_at=now,
        )
    if kind is records.EventType.SUSPENDED:
        return records.InstanceUpdate(status=records.InstanceStatus.SUSPENDED, last_activity_at=now)
    return records.InstanceUpdate(last_activity_at=now)


def record_event(event: pb.InstanceEvent, services: Services) -> None:
    """Store one event and apply its status change, in one transaction."""
    instance_id = mapping.require_id(event)
    kind = mapping.event_type(event.event_type)

    def work(tx: base.Transaction) -> None:
        now = services.now()
        instance = require_instance(tx, instance_id)
        if instance.status.is_terminal and kind in _STATUS_CHANGING:
            if _repeats_final_event(instance, kind, event.payload):
                tx.update_instance(instance_id, records.InstanceUpdate(last_activity_at=now))
                return
            raise errors.InstanceFinished(instance_id, instance.status.value)
        tx.insert_event(
            records.Event(
                instance_id=instance_id,
                event_type=kind,
                created_at=now,
                checkpoint_id=event.checkpoint_id if event.HasField("checkpoint_id") else None,
                payload=event.payload or None,
                subtype=event.subtype if event.HasField("subtype") else None,
            )
        )
        if instance.status.is_terminal:
            tx.update_instance(instance_id, records.InstanceUpdate(last_activity_at=now))
        else:
            tx.update_instance(instance_id, _status_update(kind, event.payload, now))

    services.storage.run(work)


def instance_event(request: pb.InstanceEvent, services: Services) -> pb.RpcResponse:
    record_event(request, services)
    return pb.RpcResponse(instance_event=pb.InstanceEventResponse(success=True))


def instance_event_batch(request: pb.InstanceEventBatch, services: Services) -> None:
    """Each event is its own operation; a refused one is logged and skipped."""
    for index, event in enumerate(request.events):
        try:
            record_event(event, services)
        except (errors.RequestError, errors.StorageError) as error:
            logger.warning(
                "event %d of a batch for instance %r skipped: %s", index, event.instance_id, error
            )
