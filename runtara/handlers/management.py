"""The management protocol's operations (upstream's messages, plus our additions).

Served on their own port when ``--management-addr`` is set. Refusals an
operator can act on (unknown or finished instance, missing checkpoint id) are
answered in-band (``success=false`` / ``found=false``); storage failures are
``RpcResponse.error`` with the code ``<OPERATION>_ERROR``.
"""

from __future__ import annotations

import time

from runtara import __version__, errors, records
from runtara.admin import wire
from runtara.admin.local import LocalAdmin
from runtara.handlers.operations import Operation
from runtara.handlers.services import Services
from runtara.protocol import management_pb2 as mpb
from runtara.storage import base

DEFAULT_LIMIT = 100


def _admin(services: Services) -> LocalAdmin:
    return LocalAdmin(services.storage, services.now)


def _limit(value: int) -> int:
    return value or DEFAULT_LIMIT


def health_check(request: mpb.HealthCheckRequest, services: Services) -> mpb.RpcResponse:
    admin = _admin(services)
    return mpb.RpcResponse(
        health_check=mpb.HealthCheckResponse(
            healthy=True,
            version=__version__,
            uptime_ms=int((time.monotonic() - services.started) * 1000),
            active_instances=admin.count_active(),
        )
    )


def send_signal(request: mpb.SendSignalRequest, services: Services) -> mpb.RpcResponse:
    signal_type = wire.signal_from_wire(request.signal_type)
    try:
        if signal_type is None:
            raise errors.OperationRefused(f"Unknown signal type: {request.signal_type}")
        _admin(services).send_signal(request.instance_id, signal_type, request.payload)
    except errors.OperationRefused as refusal:
        return mpb.RpcResponse(
            send_signal=mpb.SendSignalResponse(success=False, error=str(refusal))
        )
    return mpb.RpcResponse(send_signal=mpb.SendSignalResponse(success=True))


def send_custom_signal(request: mpb.SendCustomSignalRequest, services: Services) -> mpb.RpcResponse:
    try:
        _admin(services).send_custom_signal(
            request.instance_id, request.checkpoint_id, request.payload
        )
    except errors.OperationRefused as refusal:
        return mpb.RpcResponse(
            send_custom_signal=mpb.SendCustomSignalResponse(success=False, error=str(refusal))
        )
    return mpb.RpcResponse(send_custom_signal=mpb.SendCustomSignalResponse(success=True))


def get_instance_status(
    request: mpb.GetInstanceStatusRequest, services: Services
) -> mpb.RpcResponse:
    details = _admin(services).instance_details(request.instance_id, recent_events=0)
    reply = mpb.GetInstanceStatusResponse(instance_id=request.instance_id)
    if details is None:
        reply.status = mpb.STATUS_UNKNOWN
        reply.error = "Instance not found"
        return mpb.RpcResponse(get_instance_status=reply)
    summary = wire.instance_to_wire(details.instance)
    reply.status = summary.status
    reply.started_at_ms = summary.started_at_ms
    for field in ("checkpoint_id", "finished_at_ms", "output", "error"):
        if summary.HasField(field):
            setattr(reply, field, getattr(summary, field))
    return mpb.RpcResponse(get_instance_status=reply)


def list_instances(request: mpb.ListInstancesRequest, services: Services) -> mpb.RpcResponse:
    status = wire.status_from_wire(request.status) if request.HasField("status") else None
    if request.HasField("status") and status is None:
        return mpb.RpcResponse(list_instances=mpb.ListInstancesResponse())
    page = _admin(services).list_instances(
        tenant_id=request.tenant_id if request.HasField("tenant_id") else None,
        status=status,
        limit=_limit(request.limit),
        offset=request.offset,
    )
    return mpb.RpcResponse(
        list_instances=mpb.ListInstancesResponse(
            instances=[wire.instance_to_wire(instance) for instance in page.items],
            total_count=page.total,
        )
    )


def get_instance(request: mpb.GetInstanceRequest, services: Services) -> mpb.RpcResponse:
    details = _admin(services).instance_details(request.instance_id, request.recent_events)
    if details is None:
        return mpb.RpcResponse(get_instance=mpb.GetInstanceResponse(found=False))
    reply = mpb.GetInstanceResponse(
        found=True,
        instance=wire.instance_to_wire(details.instance),
        custom_signals=[wire.custom_signal_to_wire(s) for s in details.custom_signals],
        recent_events=[wire.event_to_wire(e) for e in details.recent_events],
    )
    if details.pending_signal is not None:
        reply.pending_signal.CopyFrom(wire.signal_to_pending(details.pending_signal))
    return mpb.RpcResponse(get_instance=reply)


def list_checkpoints(request: mpb.ListCheckpointsRequest, services: Services) -> mpb.RpcResponse:
    limit = _limit(request.limit)
    try:
        page = _admin(services).list_checkpoints(
            request.instance_id,
            checkpoint_id=request.checkpoint_id if request.HasField("checkpoint_id") else None,
            created_after=wire.optional_time(request, "created_after_ms"),
            created_before=wire.optional_time(request, "created_before_ms"),
            limit=limit,
            offset=request.offset,
        )
    except errors.OperationRefused:
        return mpb.RpcResponse(list_checkpoints=mpb.ListCheckpointsResponse(limit=limit))
    return mpb.RpcResponse(
        list_checkpoints=mpb.ListCheckpointsResponse(
            checkpoints=[wire.checkpoint_info_to_wire(info) for info in page.items],
            total_count=page.total,
            limit=limit,
            offset=request.offset,
        )
    )


def get_checkpoint(request: mpb.GetCheckpointRequest, services: Services) -> mpb.RpcResponse:
    try:
        checkpoint = _admin(services).get_checkpoint(request.instance_id, request.checkpoint_id)
    except errors.OperationRefused:
        checkpoint = None
    reply = mpb.GetCheckpointResponse(
        checkpoint_id=request.checkpoint_id, instance_id=request.instance_id
    )
    if checkpoint is not None:
        reply.found = True
        reply.created_at_ms = wire.millis(checkpoint.created_at)
        reply.data = checkpoint.state
    return mpb.RpcResponse(get_checkpoint=reply)


def list_events(request: mpb.ListEventsRequest, services: Services) -> mpb.RpcResponse:
    try:
        event_filter = base.EventFilter(
            event_type=_event_type(request),
            subtype=request.subtype if request.HasField("subtype") else None,
            created_after=wire.optional_time(request, "created_after_ms"),
            created_before=wire.optional_time(request, "created_before_ms"),
            payload_contains=(
                request.payload_contains if request.HasField("payload_contains") else None
            ),
        )
        page = _admin(services).list_events(
            request.instance_id, event_filter, limit=_limit(request.limit), offset=request.offset
        )
    except errors.OperationRefused:
        return mpb.RpcResponse(list_events=mpb.ListEventsResponse())
    return mpb.RpcResponse(
        list_events=mpb.ListEventsResponse(
            events=[wire.event_to_wire(event) for event in page.items], total_count=page.total
        )
    )


def get_stats(request: mpb.GetStatsRequest, services: Services) -> mpb.RpcResponse:
    return mpb.RpcResponse(get_stats=mpb.GetStatsResponse(counters=dict(services.counters())))


def _event_type(request: mpb.ListEventsRequest) -> records.EventType | None:
    if not request.HasField("event_type"):
        return None
    try:
        return records.EventType(request.event_type)
    except ValueError:
        raise errors.OperationRefused(f"unknown event type {request.event_type!r}") from None


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation("health_check", health_check, "HEALTH_CHECK_ERROR", mpb.RpcResponse),
        Operation("send_signal", send_signal, "SEND_SIGNAL_ERROR", mpb.RpcResponse),
        Operation(
            "send_custom_signal", send_custom_signal, "SEND_CUSTOM_SIGNAL_ERROR", mpb.RpcResponse
        ),
        Operation(
            "get_instance_status", get_instance_status, "GET_INSTANCE_STATUS_ERROR", mpb.RpcResponse
        ),
        Operation("list_instances", list_instances, "LIST_INSTANCES_ERROR", mpb.RpcResponse),
        Operation("get_instance", get_instance, "GET_INSTANCE_ERROR", mpb.RpcResponse),
        Operation("list_checkpoints", list_checkpoints, "LIST_CHECKPOINTS_ERROR", mpb.RpcResponse),
        Operation("get_checkpoint", get_checkpoint, "GET_CHECKPOINT_ERROR", mpb.RpcResponse),
        Operation("list_events", list_events, "LIST_EVENTS_ERROR", mpb.RpcResponse),
        Operation("get_stats", get_stats, "GET_STATS_ERROR", mpb.RpcResponse),
    )
}
