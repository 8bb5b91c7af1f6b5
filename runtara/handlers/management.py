"""The management protocol's operations (upstream's messages, plus our additions).

Served on their own port when ``--management-addr`` is set. Refusals an
operator can act on (unknown or finished instance, missing checkpoint id) are
answered in-band (``success=false`` / ``found=false``); storage failures are
``RpcResponse.error`` with the code ``<OPERATION>_ERROR``.
"""

from __future__ import annotations

import datetime as dt
import time

from runtara import __version__, errors, mapping, records
from runtara.handlers.services import Services
from runtara.launcher import logs, spec
from runtara.protocol import management_pb2 as mpb
from runtara.storage import launches, listing, operations, queues, schedules

DEFAULT_LIMIT = 100


def _limit(value: int) -> int:
    return value or DEFAULT_LIMIT


def _read(services: Services, work):
    return services.storage.run(work, write=False)


def health_check(request: mpb.HealthCheckRequest, services: Services) -> mpb.RpcResponse:
    """Healthy when the storage answers and accepts writes; the reason otherwise."""
    problem = services.storage_health.problem
    if problem is None:
        try:
            services.storage.check()
        except errors.StorageError as error:
            problem = str(error)
    if problem is not None:
        return mpb.RpcResponse(
            health_check=mpb.HealthCheckResponse(
                healthy=False, version=__version__, error=f"storage: {problem}"
            )
        )
    return mpb.RpcResponse(
        health_check=mpb.HealthCheckResponse(
            healthy=True,
            version=__version__,
            uptime_ms=int((time.monotonic() - services.started) * 1000),
            active_instances=_read(services, operations.count_active),
        )
    )


def send_signal(request: mpb.SendSignalRequest, services: Services) -> mpb.RpcResponse:
    signal_type = mapping.signal_from_wire(request.signal_type)
    try:
        if signal_type is None:
            raise errors.OperationRefused(f"Unknown signal type: {request.signal_type}")
        now = services.now()
        services.storage.run(
            lambda tx: operations.send_signal(
                tx, request.instance_id, signal_type, request.payload, now
            )
        )
    except errors.OperationRefused as refusal:
        return mpb.RpcResponse(
            send_signal=mpb.SendSignalResponse(success=False, error=str(refusal))
        )
    return mpb.RpcResponse(send_signal=mpb.SendSignalResponse(success=True))


def send_custom_signal(request: mpb.SendCustomSignalRequest, services: Services) -> mpb.RpcResponse:
    now = services.now()
    try:
        services.storage.run(
            lambda tx: operations.send_custom_signal(
                tx, request.instance_id, request.checkpoint_id, request.payload, now
            )
        )
    except errors.OperationRefused as refusal:
        return mpb.RpcResponse(
            send_custom_signal=mpb.SendCustomSignalResponse(success=False, error=str(refusal))
        )
    return mpb.RpcResponse(send_custom_signal=mpb.SendCustomSignalResponse(success=True))


def get_instance_status(
    request: mpb.GetInstanceStatusRequest, services: Services
) -> mpb.RpcResponse:
    instance = _read(services, lambda tx: tx.get_instance(request.instance_id))
    reply = mapping.status_response(request.instance_id, instance, mpb.GetInstanceStatusResponse)
    return mpb.RpcResponse(get_instance_status=reply)


def list_instances(request: mpb.ListInstancesRequest, services: Services) -> mpb.RpcResponse:
    status = mapping.status_from_wire(request.status) if request.HasField("status") else None
    if request.HasField("status") and status is None:
        return mpb.RpcResponse(list_instances=mpb.ListInstancesResponse())
    tenant_id = request.tenant_id if request.HasField("tenant_id") else None
    page = _read(
        services,
        lambda tx: listing.list_instances(
            tx,
            tenant_id=tenant_id,
            status=status,
            limit=_limit(request.limit),
            offset=request.offset,
            after=request.after if request.HasField("after") else None,
            before=request.before if request.HasField("before") else None,
            count_at_most=request.count_at_most if request.HasField("count_at_most") else None,
        ),
    )
    return mpb.RpcResponse(
        list_instances=mpb.ListInstancesResponse(
            instances=[mapping.instance_to_wire(instance) for instance in page.items],
            total_count=page.total,
            next_cursor=page.next_cursor,
            previous_cursor=page.previous_cursor,
        )
    )


def get_instance(request: mpb.GetInstanceRequest, services: Services) -> mpb.RpcResponse:
    now = services.now()
    details = _read(
        services,
        lambda tx: operations.instance_details(tx, request.instance_id, request.recent_events, now),
    )
    if details is None:
        return mpb.RpcResponse(get_instance=mpb.GetInstanceResponse(found=False))
    reply = mpb.GetInstanceResponse(
        found=True,
        instance=mapping.instance_to_wire(details.instance),
        custom_signals=[mapping.custom_signal_to_wire(s) for s in details.custom_signals],
        recent_events=[mapping.event_to_wire(e) for e in details.recent_events],
        children=details.children,
    )
    if details.pending_signal is not None:
        reply.pending_signal.CopyFrom(mapping.pending_signal_to_wire(details.pending_signal))
    if details.launch is not None:
        reply.launch.CopyFrom(mapping.launch_to_wire(details.launch))
    if details.wait_reason is not None:
        reply.wait_reason = details.wait_reason
    return mpb.RpcResponse(get_instance=reply)


def list_checkpoints(request: mpb.ListCheckpointsRequest, services: Services) -> mpb.RpcResponse:
    limit = _limit(request.limit)
    try:
        page = _read(
            services,
            lambda tx: operations.list_checkpoints(
                tx,
                request.instance_id,
                mapping.checkpoint_filter_from_wire(request),
                limit=limit,
                offset=request.offset,
            ),
        )
    except errors.OperationRefused:
        return mpb.RpcResponse(list_checkpoints=mpb.ListCheckpointsResponse(limit=limit))
    return mpb.RpcResponse(
        list_checkpoints=mpb.ListCheckpointsResponse(
            checkpoints=[mapping.checkpoint_info_to_wire(info) for info in page.items],
            total_count=page.total,
            limit=limit,
            offset=request.offset,
        )
    )


def get_checkpoint(request: mpb.GetCheckpointRequest, services: Services) -> mpb.RpcResponse:
    try:
        checkpoint = _read(
            services,
            lambda tx: operations.read_checkpoint(tx, request.instance_id, request.checkpoint_id),
        )
    except errors.OperationRefused:
        checkpoint = None
    reply = mpb.GetCheckpointResponse(
        checkpoint_id=request.checkpoint_id, instance_id=request.instance_id
    )
    if checkpoint is not None:
        reply.found = True
        reply.created_at_ms = mapping.millis(checkpoint.created_at)
        reply.data = checkpoint.state
    return mpb.RpcResponse(get_checkpoint=reply)


def list_events(request: mpb.ListEventsRequest, services: Services) -> mpb.RpcResponse:
    try:
        event_filter = mapping.event_filter_from_wire(request)
        page = _read(
            services,
            lambda tx: operations.list_events(
                tx,
                request.instance_id,
                event_filter,
                limit=_limit(request.limit),
                offset=request.offset,
            ),
        )
    except (ValueError, errors.OperationRefused):
        return mpb.RpcResponse(list_events=mpb.ListEventsResponse())
    return mpb.RpcResponse(
        list_events=mpb.ListEventsResponse(
            events=[mapping.event_to_wire(event) for event in page.items], total_count=page.total
        )
    )


def get_stats(request: mpb.GetStatsRequest, services: Services) -> mpb.RpcResponse:
    return mpb.RpcResponse(get_stats=mpb.GetStatsResponse(counters=dict(services.counters())))


def start_instance(request: mpb.StartInstanceRequest, services: Services) -> mpb.RpcResponse:
    try:
        operations.require_id(request.instance_id, "instance_id")
        operations.require_id(request.tenant_id, "tenant_id")
        launch = spec.checked(spec.LaunchSpec.from_json(request.spec))
        payload = spec.checked_input(request.input) if request.HasField("input") else None
        now = services.now()
        due = launches.due_time(
            now,
            mapping.optional_time(request, "not_before_ms"),
            request.delay_ms / 1000 if request.HasField("delay_ms") else None,
        )
        deduplicated = services.storage.run(
            lambda tx: launches.start_instance(
                tx,
                request.instance_id,
                request.tenant_id,
                launch.to_json(),
                payload,
                launch.max_failures,
                now,
                replace=request.replace,
                queue=launch.queue,
                key=launch.key,
                priority=launch.priority,
                not_before=due,
            )
        )
    except (errors.OperationRefused, errors.ConfigError) as refusal:
        return mpb.RpcResponse(
            start_instance=mpb.StartInstanceResponse(success=False, error=str(refusal))
        )
    return mpb.RpcResponse(
        start_instance=mpb.StartInstanceResponse(success=True, deduplicated=deduplicated)
    )


def stop_instance(request: mpb.StopInstanceRequest, services: Services) -> mpb.RpcResponse:
    now = services.now()
    try:
        if request.give_up:
            done = services.storage.run(
                lambda tx: launches.cancel_unanswered(
                    tx, request.instance_id, request.reason or "stopped", now
                )
            )
        else:
            grace = dt.timedelta(milliseconds=request.grace_ms)
            done = services.storage.run(
                lambda tx: launches.request_stop(tx, request.instance_id, grace, now)
            )
    except errors.OperationRefused as refusal:
        return mpb.RpcResponse(
            stop_instance=mpb.StopInstanceResponse(success=False, error=str(refusal))
        )
    return mpb.RpcResponse(stop_instance=mpb.StopInstanceResponse(success=True, launched=done))


def retry_instance(request: mpb.RetryInstanceRequest, services: Services) -> mpb.RpcResponse:
    try:
        operations.require_id(request.instance_id, "instance_id")
        env = spec.parse_env(list(request.env))
        payload = (
            spec.checked_input(request.input) if request.HasField("input") else records.UNCHANGED
        )
        now = services.now()
        instance = services.storage.run(
            lambda tx: launches.retry(
                tx,
                request.instance_id,
                now,
                respec=(lambda stored: spec.with_env(stored, env)) if env else None,
                payload=payload,
            )
        )
    except (errors.OperationRefused, errors.ConfigError) as refusal:
        return mpb.RpcResponse(
            retry_instance=mpb.RetryInstanceResponse(success=False, error=str(refusal))
        )
    reply = mpb.RetryInstanceResponse(success=True)
    if instance.checkpoint_id is not None:
        reply.checkpoint_id = instance.checkpoint_id
    return mpb.RpcResponse(retry_instance=reply)


def fork_instance(request: mpb.ForkInstanceRequest, services: Services) -> mpb.RpcResponse:
    try:
        operations.require_id(request.instance_id, "instance_id")
        new_id = (
            request.new_id if request.HasField("new_id") else launches.fork_id(request.instance_id)
        )
        operations.require_id(new_id, "new_id")
        checkpoint_id = request.checkpoint_id if request.HasField("checkpoint_id") else None
        if checkpoint_id is not None:
            operations.require_id(checkpoint_id, "checkpoint_id")
        env = spec.parse_env(list(request.env))
        payload = (
            spec.checked_input(request.input) if request.HasField("input") else records.UNCHANGED
        )
        now = services.now()
        forked_at = services.storage.run(
            lambda tx: launches.fork(
                tx,
                request.instance_id,
                checkpoint_id,
                new_id,
                now,
                respec=(lambda stored: spec.with_env(stored, env)) if env else None,
                payload=payload,
            )
        )
    except (errors.OperationRefused, errors.ConfigError) as refusal:
        return mpb.RpcResponse(
            fork_instance=mpb.ForkInstanceResponse(success=False, error=str(refusal))
        )
    return mpb.RpcResponse(
        fork_instance=mpb.ForkInstanceResponse(
            success=True, instance_id=new_id, checkpoint_id=forked_at
        )
    )


def start_child(request: mpb.StartChildRequest, services: Services) -> mpb.RpcResponse:
    """Start a child of a live instance (see :func:`launches.start_child`)."""
    try:
        operations.require_id(request.parent_id, "parent_id")
        operations.require_id(request.child_id, "child_id")
        env = spec.parse_env(list(request.env))
        payload = spec.checked_input(request.input) if request.HasField("input") else None
        now = services.now()
        deduplicated = services.storage.run(
            lambda tx: launches.start_child(
                tx,
                request.parent_id,
                request.child_id,
                list(request.command) or None,
                env,
                payload,
                request.on_parent_cancel or "cancel",
                now,
                checked=lambda text: spec.checked(spec.LaunchSpec.from_json(text)).to_json(),
            )
        )
    except (errors.OperationRefused, errors.ConfigError) as refusal:
        return mpb.RpcResponse(
            start_child=mpb.StartChildResponse(success=False, error=str(refusal))
        )
    return mpb.RpcResponse(
        start_child=mpb.StartChildResponse(success=True, deduplicated=deduplicated)
    )


def get_child(request: mpb.GetChildRequest, services: Services) -> mpb.RpcResponse:
    """A child's status, output and error; not found for an instance that is not
    ``parent_id``'s child."""

    def read(tx):
        launch = tx.get_launch(request.child_id)
        if launch is None or launch.parent_instance != request.parent_id:
            return None
        return tx.get_instance(request.child_id)

    instance = _read(services, read) if request.parent_id else None
    if instance is None:
        return mpb.RpcResponse(get_child=mpb.GetChildResponse(found=False))
    reply = mpb.GetChildResponse(found=True, status=mapping.status_to_wire(instance.status))
    if instance.output is not None:
        reply.output = instance.output
    if instance.error is not None:
        reply.error = instance.error
    return mpb.RpcResponse(get_child=reply)


def read_log(request: mpb.ReadLogRequest, services: Services) -> mpb.RpcResponse:
    if request.stream not in logs.STREAMS or services.runs_dir is None:
        return mpb.RpcResponse(read_log=mpb.ReadLogResponse())
    data, offset = logs.read_from(
        logs.log_path(services.runs_dir, request.instance_id, request.stream), request.offset
    )
    return mpb.RpcResponse(read_log=mpb.ReadLogResponse(data=data, next_offset=offset))


def set_queue(request: mpb.SetQueueRequest, services: Services) -> mpb.RpcResponse:
    try:
        try:
            changes = mapping.queue_changes_from_wire(request)
        except ValueError as problem:
            raise errors.OperationRefused(f"set_queue: {problem}") from None
        queue = services.storage.run(lambda tx: queues.set_queue(tx, request.name, **changes))
    except (errors.OperationRefused, errors.ConfigError) as refusal:
        return mpb.RpcResponse(set_queue=mpb.SetQueueResponse(success=False, error=str(refusal)))
    return mpb.RpcResponse(
        set_queue=mpb.SetQueueResponse(success=True, queue=mapping.queue_to_wire(queue))
    )


def list_queues(request: mpb.ListQueuesRequest, services: Services) -> mpb.RpcResponse:
    now = services.now()
    views = _read(services, lambda tx: queues.list_queues(tx, now))
    return mpb.RpcResponse(
        list_queues=mpb.ListQueuesResponse(queues=[mapping.queue_view_to_wire(v) for v in views])
    )


def add_schedule(request: mpb.AddScheduleRequest, services: Services) -> mpb.RpcResponse:
    try:
        operations.require_id(request.tenant_id, "tenant_id")
        launch = spec.checked(spec.LaunchSpec.from_json(request.spec))
        payload = spec.checked_input(request.input) if request.HasField("input") else None
        now = services.now()
        schedule = services.storage.run(
            lambda tx: schedules.add(
                tx,
                request.name,
                cron=request.cron if request.HasField("cron") else None,
                every=request.every_seconds if request.HasField("every_seconds") else None,
                timezone=request.timezone,
                overlap=request.overlap,
                catch_up=request.catch_up,
                tenant_id=request.tenant_id,
                spec=launch.to_json(),
                payload=payload,
                now=now,
                replace=request.replace,
            )
        )
    except (errors.OperationRefused, errors.ConfigError) as refusal:
        return mpb.RpcResponse(
            add_schedule=mpb.AddScheduleResponse(success=False, error=str(refusal))
        )
    return mpb.RpcResponse(
        add_schedule=mpb.AddScheduleResponse(
            success=True, schedule=mapping.schedule_to_wire(schedule)
        )
    )


def list_schedules(request: mpb.ListSchedulesRequest, services: Services) -> mpb.RpcResponse:
    found = _read(services, lambda tx: tx.list_schedules())
    return mpb.RpcResponse(
        list_schedules=mpb.ListSchedulesResponse(
            schedules=[mapping.schedule_to_wire(schedule) for schedule in found]
        )
    )


def change_schedule(request: mpb.ChangeScheduleRequest, services: Services) -> mpb.RpcResponse:
    reply = mpb.ChangeScheduleResponse(success=True)
    name = request.name
    try:
        now = services.now()
        if request.action in (mpb.SCHEDULE_PAUSE, mpb.SCHEDULE_RESUME):
            paused = request.action == mpb.SCHEDULE_PAUSE
            schedule = services.storage.run(lambda tx: schedules.set_paused(tx, name, paused, now))
            reply.schedule.CopyFrom(mapping.schedule_to_wire(schedule))
        elif request.action == mpb.SCHEDULE_REMOVE:
            if not services.storage.run(lambda tx: schedules.remove(tx, name)):
                raise errors.OperationRefused(f"Schedule '{name}' not found")
        elif request.action == mpb.SCHEDULE_TRIGGER:
            reply.instance_id = services.storage.run(lambda tx: schedules.trigger(tx, name, now))
        else:
            raise errors.OperationRefused(f"Unknown schedule action: {request.action}")
    except (errors.OperationRefused, errors.ConfigError) as refusal:
        return mpb.RpcResponse(
            change_schedule=mpb.ChangeScheduleResponse(success=False, error=str(refusal))
        )
    return mpb.RpcResponse(change_schedule=reply)
