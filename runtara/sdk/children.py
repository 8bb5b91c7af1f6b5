"""Child instances: what :meth:`Instance.start_child` and
:meth:`Instance.wait_child` need to start others and wait for their results.

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

import os
from typing import Any

from runtara import errors
from runtara.client.connection import Connection
from runtara.protocol import codes
from runtara.protocol import management_pb2 as mpb
from runtara.records import InstanceStatus
from runtara.sdk import exceptions

FIRST_INTERVAL = 1.0
"""The first sleep of a wait for a child (seconds); each next one doubles."""
LONGEST_INTERVAL = 10.0
"""The longest sleep of a wait for a child (seconds)."""
POLICIES = ("cancel", "abandon")

FINAL = {
    mpb.STATUS_COMPLETED: InstanceStatus.COMPLETED,
    mpb.STATUS_FAILED: InstanceStatus.FAILED,
    mpb.STATUS_CANCELLED: InstanceStatus.CANCELLED,
}
"""The statuses a child ends in, as the management service sends them."""


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


class Management:
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
