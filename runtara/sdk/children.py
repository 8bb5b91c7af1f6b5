"""Child instances: a workflow starts others and waits for their results.

The instance protocol has no start message, so children are started and read
through the management service (``RUNTARA_MANAGEMENT_ADDR``) with the
instance's own child credential (``RUNTARA_CHILD_TOKEN``), which the launcher
gives each process it starts and which allows only StartChild and GetChild
naming this instance as the parent.

Starting is a durable step keyed by the child's id (the checkpoint
``child::<id>``) on top of an idempotent start (the same child, specification
and input again answers deduplicated), so a parent relaunched after a crash
between the two never starts a child twice. Waiting is a loop: the child's
status is read, and while it is not finished the parent sleeps durably with
``exit=True`` (keys ``wait-child::<id>::<n>``), 1 s, doubling up to 10 s, so a
long wait holds no process; the launcher relaunches the parent when each sleep
is due and the loop goes on (the sleeps already over return at once).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from runtara import errors
from runtara.client.connection import Connection
from runtara.protocol import codes
from runtara.protocol import management_pb2 as mpb
from runtara.records import InstanceStatus
from runtara.sdk import exceptions

if TYPE_CHECKING:
    from runtara.sdk.instance import Instance

FIRST_INTERVAL = 1.0
"""The first sleep of a wait for a child (seconds); each next one doubles."""
LONGEST_INTERVAL = 10.0
"""The longest sleep of a wait for a child (seconds)."""
POLICIES = ("cancel", "abandon")

_FINAL = {
    mpb.STATUS_COMPLETED: InstanceStatus.COMPLETED,
    mpb.STATUS_FAILED: InstanceStatus.FAILED,
    mpb.STATUS_CANCELLED: InstanceStatus.CANCELLED,
}


class ChildFailed(errors.RuntaraError):
    """A child instance failed or was cancelled: ``child_id``, ``status``, ``error``."""

    def __init__(self, child_id: str, status: InstanceStatus, error: str | None) -> None:
        self.child_id = child_id
        self.status = status
        self.error = error
        said = f": {error}" if error else ""
        super().__init__(f"child instance {child_id!r} {status.value}{said}")


class ChildTimeout(TimeoutError):
    """A child did not finish within the wait's timeout."""


class _Management:
    """The management service, reached with the instance's child credential."""

    def __init__(self, instance_id: str, environ: Any = None) -> None:
        environ = os.environ if environ is None else environ
        self.parent_id = instance_id
        address = environ.get("RUNTARA_MANAGEMENT_ADDR")
        self.token = environ.get("RUNTARA_CHILD_TOKEN")
        if not address or not self.token:
            raise errors.ConfigError(
                "starting or waiting for a child instance needs RUNTARA_MANAGEMENT_ADDR and "
                "RUNTARA_CHILD_TOKEN (the launcher sets them when the server has a "
                "management service, --management-addr)"
            )
        host, _, port = address.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self._connection: Connection | None = None

    async def call(self, **oneof: Any) -> mpb.RpcResponse:
        for attempt in range(2):
            if self._connection is None or self._connection.closed:
                self._connection = await Connection.open(self.host, self.port, timeout=10.0)
            request = mpb.RpcRequest(token=self.token, **oneof)
            try:
                response = await self._connection.call(request, mpb.RpcResponse, timeout=30.0)
            except errors.ConnectionLost:
                self._connection = None
                if attempt:
                    raise
                continue
            if response.HasField("error"):
                code = response.error.code
                if code in (codes.UNAUTHENTICATED, codes.PERMISSION_DENIED):
                    raise errors.AccessDenied(f"management service: {response.error.message}")
                raise exceptions.ServerError(code, response.error.message)
            return response
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None


def _management(instance: Instance) -> _Management:
    found = getattr(instance, "_children_client", None)
    if found is None:
        found = instance._children_client = _Management(instance.instance_id)
    return found


def start_child(
    instance: Instance,
    child_id: str,
    *,
    command: Sequence[str] | None = None,
    input: Any = None,
    env: dict[str, str] | None = None,
    on_parent_cancel: str = "cancel",
) -> str:
    if on_parent_cancel not in POLICIES:
        raise ValueError(
            f"on_parent_cancel must be 'cancel' or 'abandon', not {on_parent_cancel!r}"
        )
    key = f"child::{child_id}"
    if instance.get_checkpoint(key) is not None:
        return child_id
    request = mpb.StartChildRequest(
        parent_id=instance.instance_id,
        child_id=child_id,
        command=list(command or ()),
        env=[f"{name}={value}" for name, value in (env or {}).items()],
        on_parent_cancel=on_parent_cancel,
    )
    if input is not None:
        request.input = json.dumps(input).encode("utf-8")
    client = _management(instance)
    reply = instance._run(client.call(start_child=request)).start_child
    if not reply.success:
        raise exceptions.ServerError("START_CHILD_REFUSED", reply.error)
    instance.checkpoint(key, json.dumps({"child": child_id}).encode())
    return child_id


def child_status(instance: Instance, child_id: str) -> mpb.GetChildResponse:
    request = mpb.GetChildRequest(parent_id=instance.instance_id, child_id=child_id)
    return instance._run(_management(instance).call(get_child=request)).get_child


def wait_child(instance: Instance, child_id: str, timeout: float | None = None) -> Any:
    reply = child_status(instance, child_id)
    if not reply.found:
        raise exceptions.InvalidState(f"{child_id!r} is not a child of {instance.instance_id!r}")
    if reply.status not in _FINAL:
        # when the wait began, saved once, so that the timeout spans relaunches
        began = instance.checkpoint(f"wait-child::{child_id}", json.dumps(time.time()).encode())
        since = json.loads(began.existing_state or b"0") if began.found else time.time()
        interval, sleeps = FIRST_INTERVAL, 0
        while reply.status not in _FINAL:
            if timeout is not None and time.time() - since >= timeout:
                raise ChildTimeout(f"child instance {child_id!r} did not finish in {timeout}s")
            instance.sleep(interval, key=f"wait-child::{child_id}::{sleeps}", exit=True)
            sleeps += 1
            interval = min(LONGEST_INTERVAL, interval * 2)
            reply = child_status(instance, child_id)
    status = _FINAL[reply.status]
    if status is not InstanceStatus.COMPLETED:
        # A child cancelled because this instance is being stopped: the stop's cancel
        # (raised here under the runner) is what ends this instance, not the child.
        instance.poll_signals(force=True)
        raise ChildFailed(child_id, status, reply.error if reply.HasField("error") else None)
    output = reply.output if reply.HasField("output") else b""
    return json.loads(output) if output else None
