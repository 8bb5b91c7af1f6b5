"""The SDK's one cached QUIC connection to the server.

Every call first makes sure the cached connection is open: if it was closed
(the server restarted, the idle timeout passed) one new handshake is tried,
bounded by the connect timeout. Every call is bounded by the request timeout.
A request larger than the 64 MiB frame limit is refused before anything is
sent. An ``OVERLOADED`` answer is retried with a short back-off while the
request timeout allows; ``SUPERSEDED`` (another process registered the
instance since) is raised as :class:`~runtara.sdk.exceptions.Superseded`; any
other ``RpcError`` as :class:`~runtara.sdk.exceptions.ServerError`.

Once the instance is registered, every request names its registration, so
that the server can refuse the requests of a superseded process even after
reconnecting or on another server.

A connection that cannot be opened raises ConnectFailed (CertificateRejected
when the server's certificate does not verify) whose message says which
variable to look at.

A channel belongs to the event loop it is first used on.
"""

from __future__ import annotations

import asyncio
import contextlib

from google.protobuf.message import Message

from runtara import errors
from runtara.client.connection import CertificateRejected, Connection
from runtara.protocol import codes, framing
from runtara.protocol import instance_pb2 as pb
from runtara.sdk import exceptions
from runtara.sdk.config import SdkConfig

FIRST_BACKOFF = 0.05
LONGEST_BACKOFF = 1.0
MIN_IDLE_TIMEOUT = 30.0
"""Seconds; the server's keep-alive pings (every 15 s) must fit inside the idle timeout."""


class Channel:
    """Sends requests to the server named by a :class:`SdkConfig`."""

    def __init__(self, config: SdkConfig) -> None:
        self.config = config
        self._connection: Connection | None = None
        self._connecting = asyncio.Lock()
        self.registration: int | None = None
        """The registration the server gave this instance; named in every request."""

    async def call(self, request: pb.RpcRequest, *, timeout: float | None = None) -> Message:
        """Send ``request`` and return the reply message of the same kind.

        Raises ServerError for an ``RpcError``, BadResponse for a reply of
        another kind, and the transport errors of :mod:`runtara.errors`.
        """
        kind = _checked_kind(self._named(request))
        loop = asyncio.get_running_loop()
        timeout = self.config.request_timeout if timeout is None else timeout
        deadline = loop.time() + timeout
        backoff = FIRST_BACKOFF
        while True:
            connection = await self._connected(kind)
            with _naming(kind):
                try:
                    response = await connection.call(
                        request, pb.RpcResponse, timeout=max(deadline - loop.time(), 0.001)
                    )
                except errors.RequestTimeout:
                    raise errors.RequestTimeout(
                        f"no reply from {self.config.server_addr} within {timeout:g}s"
                    ) from None
            answer = response.WhichOneof("response")
            if answer == "error":
                code, message = response.error.code, response.error.message
                if code == codes.OVERLOADED and loop.time() + backoff < deadline:
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, LONGEST_BACKOFF)
                    continue
                if code == codes.SUPERSEDED:
                    raise exceptions.Superseded(message)
                raise exceptions.ServerError(code, message)
            if answer != kind:
                raise errors.BadResponse(f"{kind}: expected a {kind} reply, got {answer or 'none'}")
            return getattr(response, kind)

    async def call_no_reply(self, request: pb.RpcRequest) -> None:
        """Send a request the server answers with an empty FIN (its effects are
        committed by then), and wait for that FIN."""
        kind = _checked_kind(self._named(request))
        connection = await self._connected(kind)
        with _naming(kind):
            await connection.call_no_reply(request, timeout=self.config.request_timeout)

    async def send(self, request: pb.RpcRequest) -> None:
        """Write ``request`` and stop reading its stream: the server carries it
        out but its answer, if any, is discarded."""
        kind = _checked_kind(self._named(request))
        connection = await self._connected(kind)
        connection.send(request)

    async def close(self) -> None:
        """Close the connection (a later call opens a new one)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(errors.ClientError, OSError):
                await connection.close()

    def _named(self, request: pb.RpcRequest) -> pb.RpcRequest:
        if self.registration is not None:
            request.registration = self.registration
        return request

    async def _connected(self, kind: str) -> Connection:
        async with self._connecting:
            if self._connection is None or self._connection.closed:
                await self.close()
                with _naming(kind):
                    self._connection = await self._open()
            return self._connection

    async def _open(self) -> Connection:
        host, port = self.config.address
        try:
            return await Connection.open(
                host,
                port,
                server_name=self.config.server_name,
                verify=not self.config.skip_cert_verification,
                timeout=self.config.connect_timeout,
                idle_timeout=max(self.config.request_timeout, MIN_IDLE_TIMEOUT),
            )
        except CertificateRejected as error:
            raise CertificateRejected(
                f"{error}; set RUNTARA_SKIP_CERT_VERIFICATION=true for a server with a "
                "self-signed certificate, as runtara-core serves by default (or "
                "RUNTARA_SERVER_NAME to the name its certificate is issued for)"
            ) from None
        except errors.ConnectFailed as error:
            raise errors.ConnectFailed(
                f"{error}; is runtara-core serving there? (RUNTARA_SERVER_ADDR is "
                f"{self.config.server_addr})"
            ) from None


def _checked_kind(request: pb.RpcRequest) -> str:
    kind = request.WhichOneof("request")
    size = request.ByteSize()
    if size > framing.MAX_FRAME_SIZE:
        raise exceptions.PayloadTooLarge(
            f"{kind}: the request would be {size} bytes, {size - framing.MAX_FRAME_SIZE} over "
            f"the {framing.MAX_FRAME_SIZE}-byte (64 MiB) frame limit; nothing was sent"
        )
    return kind


@contextlib.contextmanager
def _naming(kind: str):
    """Prefix transport errors with the operation that met them."""
    try:
        yield
    except errors.ClientError as error:
        raise type(error)(f"{kind}: {error}") from error
