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

from runtara import errors
from runtara.admin.base import Admin
from runtara.client.connection import CertificateRejected, Connection
from runtara.client.loop_thread import LoopThread
from runtara.handlers import dispatch
from runtara.protocol import codes
from runtara.protocol import management_pb2 as mpb

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

    def _perform(self, operator, arguments):
        """The operation as one management request (two for ``asks_for_instance``)."""
        if (
            operator.asks_for_instance
            and self.instance_details(arguments["instance_id"], 0) is None
        ):
            raise errors.OperationRefused(f"Instance '{arguments['instance_id']}' not found")
        request = operator.request_of(arguments)
        reply = getattr(self._call(**{operator.field: request}), operator.field)
        return operator.outcome(reply, arguments)

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

    # Health and counters are not operator operations: locally they are the storage's
    # check and nothing, here the server's own answers.
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


async def _settle() -> None:
    """Cancel what still runs on the loop (an interrupted request) and let it
    finish, so that stopping the loop destroys no pending task."""
    leftovers = asyncio.all_tasks() - {asyncio.current_task()}
    for task in leftovers:
        task.cancel()
    await asyncio.gather(*leftovers, return_exceptions=True)
