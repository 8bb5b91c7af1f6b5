"""Operator actions through a running server's management service.

:class:`RemoteAdmin` carries out :class:`runtara.admin.base.Admin` by speaking
the management protocol over QUIC, one stream per request, and returns the
same records as :class:`runtara.admin.local.LocalAdmin`.

Who answers is checked before the first request when asked: the server's
certificate pinned by its SHA-256 fingerprint, or verified against a CA file
(:class:`runtara.client.connection.CertificateRejected` when it fails). The
caller decides whether a token may go to a server that is not checked
(:func:`runtara.config.tool_config` refuses that unless told to).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from runtara import errors, limits, mapping, records
from runtara.admin.base import Admin
from runtara.client.connection import CertificateRejected, Connection
from runtara.client.loop_thread import LoopThread
from runtara.handlers import dispatch
from runtara.launcher.spec import LaunchSpec
from runtara.protocol import codes
from runtara.protocol import management_pb2 as mpb
from runtara.records import UNCHANGED
from runtara.storage.listing import InstancePage

T = TypeVar("T")

_MANAGEMENT_CODES = frozenset(
    {operation.error_code for operation in dispatch.MANAGEMENT_OPERATIONS.values()}
    | {codes.OVERLOADED, codes.UNAVAILABLE}
)
"""The error codes a management service answers with."""


class RemoteAdmin(Admin):
    """``fingerprint`` pins the server's certificate (as
    :func:`runtara.config.fingerprint` returns it); ``ca_file`` verifies it,
    issued for ``server_name``; with neither, the certificate is not checked."""

    def __init__(
        self,
        address: tuple[str, int],
        *,
        token: str | None = None,
        timeout: float = 10.0,
        fingerprint: str | None = None,
        ca_file: Path | None = None,
        server_name: str = "localhost",
    ) -> None:
        self.address = address
        self._token = token or ""
        self._timeout = timeout
        self._fingerprint = fingerprint
        self._ca_file = ca_file
        self._server_name = server_name
        self._loop: LoopThread | None = None
        self._connection: Connection | None = None

    def describe(self) -> str:
        return f"server {self.address[0]}:{self.address[1]}"

    def _run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coroutine`` on the private loop and wait for it; interrupted
        (Ctrl-C), cancel it there, so that :meth:`close` leaves nothing pending."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop.loop)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()
            raise

    def _connect(self) -> Connection:
        host, port = self.address
        try:
            return self._run(
                Connection.open(
                    host,
                    port,
                    server_name=self._server_name,
                    verify=self._ca_file is not None,
                    cafile=None if self._ca_file is None else str(self._ca_file),
                    fingerprint=self._fingerprint,
                    timeout=self._timeout,
                )
            )
        except CertificateRejected as error:
            checks = []
            if self._fingerprint is not None:
                checks.append(
                    "--fingerprint / RUNTARA_MANAGEMENT_FINGERPRINT against the fingerprint "
                    "the server logs at start"
                )
            if self._ca_file is not None:
                checks.append(
                    "--ca-file / RUNTARA_MANAGEMENT_CA_FILE and --server-name / "
                    "RUNTARA_MANAGEMENT_SERVER_NAME"
                )
            raise CertificateRejected(
                f"{error}; nothing was sent to it (check {' and '.join(checks)})"
            ) from None
        except errors.ConnectFailed as error:
            raise errors.ConnectFailed(
                f"no management service answers at {host}:{port} ({error})"
            ) from None

    def _call(self, **oneof) -> mpb.RpcResponse:
        if self._connection is None:
            self._loop = LoopThread("runtara-admin")
            try:
                self._connection = self._connect()
            except BaseException:
                self.close()
                raise
        request = mpb.RpcRequest(token=self._token, **oneof)
        response = self._run(self._connection.call(request, mpb.RpcResponse, timeout=self._timeout))
        if response.HasField("error"):
            code = response.error.code
            if code in (codes.UNAUTHENTICATED, codes.PERMISSION_DENIED):
                raise errors.AccessDenied(
                    f"{self.describe()} refused the request: {response.error.message}"
                )
            if code == codes.EMPTY_REQUEST:
                # The request always names an operation: the other side did not know it.
                raise errors.BadResponse(
                    f"{self.describe()} did not understand the request: it is a server's "
                    "instance port, or a management service of another version (see the "
                    "server's --management-addr)"
                )
            if code not in _MANAGEMENT_CODES:
                raise errors.BadResponse(
                    f"{self.describe()} answers the runtara instance protocol ({code}): it "
                    "is a server's instance port, not its management service (the tools on "
                    "the server's machine find that one by themselves; else see the "
                    "server's --management-addr)"
                )
            raise errors.StorageError(f"{code}: {response.error.message}")
        return response

    def start_instance(
        self,
        instance_id,
        tenant_id,
        spec: LaunchSpec,
        payload,
        *,
        replace=False,
        not_before=None,
        delay=None,
    ):
        request = mpb.StartInstanceRequest(
            instance_id=instance_id, tenant_id=tenant_id, spec=spec.to_json(), replace=replace
        )
        if payload is not None:
            request.input = payload
        if not_before is not None:
            request.not_before_ms = mapping.millis(not_before)
        if delay is not None:
            # A delay is counted from the server's clock; a past one means at once.
            request.delay_ms = max(0, round(delay * 1000))
        reply = self._call(start_instance=request).start_instance
        if not reply.success:
            raise errors.OperationRefused(reply.error)
        return reply.deduplicated

    def retry_instance(
        self, instance_id: str, env: dict[str, str], payload: bytes | None
    ) -> str | None:
        request = mpb.RetryInstanceRequest(
            instance_id=instance_id, env=[f"{name}={value}" for name, value in env.items()]
        )
        if payload is not None:
            request.input = payload
        reply = self._call(retry_instance=request).retry_instance
        if not reply.success:
            raise errors.OperationRefused(reply.error)
        return reply.checkpoint_id if reply.HasField("checkpoint_id") else None

    def fork_instance(self, instance_id, checkpoint_id, new_id, env, payload):
        request = mpb.ForkInstanceRequest(
            instance_id=instance_id, env=[f"{name}={value}" for name, value in env.items()]
        )
        if checkpoint_id is not None:
            request.checkpoint_id = checkpoint_id
        if new_id is not None:
            request.new_id = new_id
        if payload is not None:
            request.input = payload
        reply = self._call(fork_instance=request).fork_instance
        if not reply.success:
            raise errors.OperationRefused(reply.error)
        return reply.instance_id, reply.checkpoint_id

    def stop_instance(self, instance_id: str, grace: float) -> bool:
        return self._stop(
            mpb.StopInstanceRequest(instance_id=instance_id, grace_ms=round(grace * 1000))
        )

    def give_up_stop(self, instance_id: str, reason: str) -> bool:
        return self._stop(
            mpb.StopInstanceRequest(instance_id=instance_id, give_up=True, reason=reason)
        )

    def _stop(self, request: mpb.StopInstanceRequest) -> bool:
        reply = self._call(stop_instance=request).stop_instance
        if not reply.success:
            raise errors.OperationRefused(reply.error)
        return reply.launched

    def read_log(self, instance_id: str, stream: str, offset: int) -> tuple[bytes, int]:
        reply = self._call(
            read_log=mpb.ReadLogRequest(instance_id=instance_id, stream=stream, offset=offset)
        ).read_log
        return reply.data, reply.next_offset

    def set_queue(
        self, name, *, concurrency=UNCHANGED, per_key=UNCHANGED, rate=UNCHANGED, paused=UNCHANGED
    ):
        request = mapping.queue_changes_to_wire(
            name, concurrency=concurrency, per_key=per_key, rate=rate, paused=paused
        )
        reply = self._call(set_queue=request).set_queue
        if not reply.success:
            raise errors.OperationRefused(reply.error)
        return mapping.queue_from_wire(reply.queue)

    def list_queues(self):
        reply = self._call(list_queues=mpb.ListQueuesRequest()).list_queues
        return [mapping.queue_view_from_wire(view) for view in reply.queues]

    def add_schedule(
        self,
        name,
        *,
        cron,
        every,
        timezone,
        overlap,
        catch_up,
        tenant_id,
        spec: LaunchSpec,
        payload,
        replace=False,
    ):
        request = mpb.AddScheduleRequest(
            name=name,
            timezone=timezone,
            overlap=overlap,
            catch_up=catch_up,
            tenant_id=tenant_id,
            spec=spec.to_json(),
            replace=replace,
        )
        if cron is not None:
            request.cron = cron
        if every is not None:
            request.every_seconds = every
        if payload is not None:
            request.input = payload
        reply = self._call(add_schedule=request).add_schedule
        if not reply.success:
            raise errors.OperationRefused(reply.error)
        return mapping.schedule_from_wire(reply.schedule)

    def list_schedules(self):
        reply = self._call(list_schedules=mpb.ListSchedulesRequest()).list_schedules
        return [mapping.schedule_from_wire(schedule) for schedule in reply.schedules]

    def _change_schedule(self, name: str, action: int) -> mpb.ChangeScheduleResponse:
        reply = self._call(
            change_schedule=mpb.ChangeScheduleRequest(name=name, action=action)
        ).change_schedule
        if not reply.success:
            raise errors.OperationRefused(reply.error)
        return reply

    def pause_schedule(self, name, paused):
        action = mpb.SCHEDULE_PAUSE if paused else mpb.SCHEDULE_RESUME
        return mapping.schedule_from_wire(self._change_schedule(name, action).schedule)

    def remove_schedule(self, name):
        self._change_schedule(name, mpb.SCHEDULE_REMOVE)

    def trigger_schedule(self, name):
        return self._change_schedule(name, mpb.SCHEDULE_TRIGGER).instance_id

    def close(self) -> None:
        if self._loop is not None:
            if self._connection is not None:
                try:
                    self._run(self._connection.close(), self._timeout)
                except Exception:  # closing a broken connection is best effort
                    pass
            self._run(_settle(), self._timeout)
            self._loop.stop()
        self._loop = None
        self._connection = None

    def health(self) -> str:
        reply = self._call(health_check=mpb.HealthCheckRequest()).health_check
        if not reply.healthy:
            reason = reply.error if reply.HasField("error") else "no reason given"
            raise errors.StorageUnavailable(f"{self.describe()} is not healthy: {reason}")
        return (
            f"{self.describe()} is healthy: runtara-core {reply.version}, "
            f"up {reply.uptime_ms / 1000:.0f}s, {reply.active_instances} active instances"
        )

    def stats(self) -> dict[str, float]:
        return dict(self._call(get_stats=mpb.GetStatsRequest()).get_stats.counters)

    def send_signal(
        self, instance_id: str, signal_type: records.SignalType, payload: bytes
    ) -> None:
        limits.check_signal_payload(instance_id, len(payload))
        reply = self._call(
            send_signal=mpb.SendSignalRequest(
                instance_id=instance_id,
                signal_type=mapping.SIGNAL_TO_WIRE[signal_type],
                payload=payload,
            )
        ).send_signal
        if not reply.success:
            raise errors.OperationRefused(reply.error)

    def send_custom_signal(self, instance_id: str, checkpoint_id: str, payload: bytes) -> None:
        limits.check_signal_payload(checkpoint_id, len(payload))
        reply = self._call(
            send_custom_signal=mpb.SendCustomSignalRequest(
                instance_id=instance_id, checkpoint_id=checkpoint_id, payload=payload
            )
        ).send_custom_signal
        if not reply.success:
            raise errors.OperationRefused(reply.error)

    def list_instances(
        self,
        *,
        tenant_id: str | None = None,
        status: records.InstanceStatus | None = None,
        limit: int = 100,
        offset: int = 0,
        after: str | None = None,
        before: str | None = None,
        count_at_most: int | None = None,
    ) -> InstancePage:
        request = mpb.ListInstancesRequest(limit=limit, offset=offset)
        if tenant_id is not None:
            request.tenant_id = tenant_id
        if status is not None:
            request.status = mapping.status_to_wire(status)
        if after is not None:
            request.after = after
        if count_at_most is not None:
            request.count_at_most = count_at_most
        if before is not None:
            request.before = before
        reply = self._call(list_instances=request).list_instances
        return InstancePage(
            [mapping.instance_from_wire(m) for m in reply.instances],
            reply.total_count,
            reply.next_cursor if reply.HasField("next_cursor") else None,
            reply.previous_cursor if reply.HasField("previous_cursor") else None,
        )

    def instance_details(
        self, instance_id: str, recent_events: int = 10
    ) -> records.InstanceDetails | None:
        reply = self._call(
            get_instance=mpb.GetInstanceRequest(
                instance_id=instance_id, recent_events=recent_events
            )
        ).get_instance
        if not reply.found:
            return None
        return records.InstanceDetails(
            mapping.instance_from_wire(reply.instance),
            mapping.pending_signal_from_wire(instance_id, reply.pending_signal)
            if reply.HasField("pending_signal")
            else None,
            [mapping.custom_signal_from_wire(instance_id, m) for m in reply.custom_signals],
            [mapping.event_from_wire(instance_id, m) for m in reply.recent_events],
            mapping.launch_from_wire(instance_id, reply.launch)
            if reply.HasField("launch")
            else None,
            reply.wait_reason if reply.HasField("wait_reason") else None,
            list(reply.children),
        )

    def _require_instance(self, instance_id: str) -> None:
        if self.instance_details(instance_id, recent_events=0) is None:
            raise errors.OperationRefused(f"Instance '{instance_id}' not found")

    def list_checkpoints(
        self,
        instance_id: str,
        checkpoint_filter: records.CheckpointFilter = records.ALL_CHECKPOINTS,
        *,
        limit: int = 100,
        offset: int = 0,
    ) -> records.Page[records.CheckpointInfo]:
        self._require_instance(instance_id)
        request = mpb.ListCheckpointsRequest(instance_id=instance_id, limit=limit, offset=offset)
        mapping.checkpoint_filter_to_wire(checkpoint_filter, request)
        reply = self._call(list_checkpoints=request).list_checkpoints
        return records.Page(
            [mapping.checkpoint_info_from_wire(m) for m in reply.checkpoints], reply.total_count
        )

    def get_checkpoint(self, instance_id: str, checkpoint_id: str) -> records.Checkpoint | None:
        self._require_instance(instance_id)
        reply = self._call(
            get_checkpoint=mpb.GetCheckpointRequest(
                instance_id=instance_id, checkpoint_id=checkpoint_id
            )
        ).get_checkpoint
        if not reply.found:
            return None
        return records.Checkpoint(
            instance_id, checkpoint_id, reply.data, mapping.from_millis(reply.created_at_ms)
        )

    def list_events(
        self,
        instance_id: str,
        event_filter: records.EventFilter = records.ALL_EVENTS,
        *,
        limit: int = 100,
        offset: int = 0,
    ) -> records.Page[records.Event]:
        self._require_instance(instance_id)
        request = mpb.ListEventsRequest(instance_id=instance_id, limit=limit, offset=offset)
        mapping.event_filter_to_wire(event_filter, request)
        reply = self._call(list_events=request).list_events
        return records.Page(
            [mapping.event_from_wire(instance_id, m) for m in reply.events], reply.total_count
        )


async def _settle() -> None:
    """Cancel what still runs on the loop (an interrupted request) and let it
    finish, so that stopping the loop destroys no pending task."""
    leftovers = asyncio.all_tasks() - {asyncio.current_task()}
    for task in leftovers:
        task.cancel()
    await asyncio.gather(*leftovers, return_exceptions=True)
