"""The SDK's one cached QUIC connection to the server, and how its calls outlive
the server's restarts.

Every call first makes sure the cached connection is open: if it was closed
(the server restarted, the idle timeout passed) a new handshake is tried,
bounded by the connect timeout. Every attempt is bounded by the request
timeout. A request larger than the 64 MiB frame limit is refused before
anything is sent. An ``OVERLOADED`` answer is retried with a short back-off
while the request timeout allows; ``SUPERSEDED`` (another process registered
the instance since) is raised as :class:`~runtara.sdk.exceptions.Superseded`;
any other ``RpcError`` as :class:`~runtara.sdk.exceptions.ServerError`.

Once the instance is registered, every request names its registration, so
that the server can refuse the requests of a superseded process even after
reconnecting or on another server. A request refused as superseded because it
named a registration this channel has replaced since is sent again under the
newest one.

Waiting for the server
----------------------

A call that finds the server unreachable waits for it: a connection that
cannot be opened (refused, no handshake in time), a connection or stream that
ends before the reply, no reply within the request timeout, and the
``UNAVAILABLE`` answer of a server that is shutting down (it applied nothing).
The call is sent again, over a new connection when the old one is closed or
silent, after a back-off of full jitter (a random time up to 0.1 s, doubling
to at most 1 s: a server that is back is found within a second), until RUNTARA_SERVER_WAIT has passed since the server was
found unreachable; then the last transport error is raised. The start of the
wait is logged once (WARNING, with the address and the cause), and so is the
server's return (INFO, with how long it was away), however many calls wait
together.

Not waited out: a certificate that does not verify (waiting does not change
it), a reply that cannot be read (``BadResponse``: a repeat would meet the same
server), and the answers of a server that works, including its storage
failures: the server answers those with the operation's own error code (such
as ``CHECKPOINT_ERROR``, or ``success=false`` for a registration), which does
not tell a database outage from a refusal, so the SDK cannot know that a
repeat would help. A server that answered them ``UNAVAILABLE`` (nothing
applied) would have them waited out with no change here.

:func:`from_the_transport` says whether an exception is a transport error a
call raised, so that the runner never reports one as the workflow's failure.

Why repeating a call is safe, request by request (the rules are in
:mod:`runtara.storage.operations`); a repeat happens when the server may or may
not have applied the first one:

- Checkpoint: an id is stored once; a repeat answers ``found=true`` with the
  state the first one saved (the same bytes).
- GetCheckpoint, GetInstanceStatus: read only.
- InstanceEvent: ``completed`` and ``failed`` are final and an exact repeat of
  the final event is accepted as done; ``heartbeat`` and ``suspended`` may be
  recorded twice, which changes nothing else. A ``custom`` event may be
  recorded twice: not exactly once.
- SignalAck: marks the pending signal of its type acknowledged; a repeat finds
  nothing left to mark (or a signal of the same type sent in between).
- RetryAttempt: stored per step; a repeat writes the same row again.
- PollSignals: the pending signal stays pending until acknowledged, so a
  repeat reports it again. A custom signal is taken by the answer that carries
  it (so is one a Checkpoint carries): if that answer is lost, the signal is
  gone. Its sender cannot tell; a workflow that must not miss one should
  confirm it, with a custom event, say.
- RegisterInstance: each registration gets a new number and records
  ``started``; the channel uses the number of the reply it got, the newest,
  and the earlier number, fenced by the server, is used by nobody.
- Sleep: the first one may have suspended the instance, which a repeat would
  find not running; :class:`runtara.sdk.async_instance.AsyncInstance` checks,
  registers again if so, and sends only the time that remains.

A channel belongs to the event loop it is first used on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import weakref

from google.protobuf.message import Message

from runtara import errors
from runtara.client.connection import CertificateRejected, Connection
from runtara.protocol import codes, framing
from runtara.protocol import instance_pb2 as pb
from runtara.sdk import exceptions
from runtara.sdk.config import SdkConfig

logger = logging.getLogger(__name__)

FIRST_BACKOFF = 0.05
LONGEST_BACKOFF = 1.0
"""Seconds between the repeats of an OVERLOADED request."""
FIRST_RETRY = 0.1
LONGEST_RETRY = 1.0
"""Seconds: the cap of the back-off between repeats while the server is unreachable
(a repeat costs one datagram, refused at once while nothing listens)."""
MIN_IDLE_TIMEOUT = 30.0
"""Seconds; the server's keep-alive pings (every 15 s) must fit inside the idle timeout."""


class ServerUnavailable(errors.ConnectionLost):
    """The server answered ``UNAVAILABLE``: it is shutting down (its connections
    are about to end) and applied nothing."""


WAITED_OUT = (errors.ConnectFailed, errors.ConnectionLost, errors.RequestTimeout)
"""The transport errors a call waits out (except CertificateRejected, a ConnectFailed)."""

_raised: weakref.WeakSet[BaseException] = weakref.WeakSet()


def from_the_transport(error: BaseException) -> bool:
    """True when ``error`` is the transport error a channel's call raised: the
    server stayed unreachable past the wait, or answered what the SDK cannot use."""
    return error in _raised


class _Outage:
    """Since when the server has been unreachable, shared by the calls of a channel."""

    def __init__(self, server: str, wait: float) -> None:
        self._server = server
        self._wait = wait
        self.began: float | None = None

    def deadline(self, cause: errors.ClientError, now: float) -> float:
        """When waiting ends; the first failure of an outage starts it (logged once)."""
        if self.began is None:
            self.began = now
            logger.warning(
                "the server at %s is unreachable (%s: %s); waiting up to %gs for it, "
                "repeating the call",
                self._server,
                type(cause).__name__,
                cause,
                self._wait,
            )
        return self.began + self._wait

    def answered(self, sent: float, now: float) -> None:
        """A request sent at ``sent`` was answered: the outage is over, unless the
        request was sent before it began (a stopping server's last replies)."""
        if self.began is not None and sent >= self.began:
            logger.info("the server at %s is back after %.1fs", self._server, now - self.began)
            self.began = None


class Retry:
    """The repeats of one call while the server is unreachable."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._attempt = 0

    async def after(self, error: errors.ClientError) -> None:
        """Return once the call may be sent again; raise ``error`` when it may not
        (not a failure that waiting mends, or the wait is over)."""
        channel = self._channel
        wait = channel.config.server_wait
        if not isinstance(error, WAITED_OUT) or isinstance(error, CertificateRejected) or not wait:
            raise _transport(error)
        now = asyncio.get_running_loop().time()
        deadline = channel.outage.deadline(error, now)
        if now >= deadline:
            raise _transport(error)
        backoff = random.uniform(0, min(LONGEST_RETRY, FIRST_RETRY * 2**self._attempt))
        self._attempt += 1
        await asyncio.sleep(min(backoff, deadline - now))


def _transport(error: errors.ClientError) -> errors.ClientError:
    _raised.add(error)
    return error


class Channel:
    """Sends requests to the server named by a :class:`SdkConfig`."""

    def __init__(self, config: SdkConfig) -> None:
        self.config = config
        self._connection: Connection | None = None
        self._connecting = asyncio.Lock()
        self.registration: int | None = None
        """The registration the server gave this instance; named in every request."""
        self.outage = _Outage(config.server_addr, config.server_wait)

    async def call(self, request: pb.RpcRequest, *, timeout: float | None = None) -> Message:
        """Send ``request`` and return the reply message of the same kind, waiting
        for an unreachable server (see the module).

        Raises ServerError for an ``RpcError``, BadResponse for a reply of
        another kind, and the transport errors of :mod:`runtara.errors`.
        """
        retry = Retry(self)
        while True:
            try:
                return await self.call_once(request, timeout=timeout)
            except errors.ClientError as error:
                await retry.after(error)

    async def call_once(self, request: pb.RpcRequest, *, timeout: float | None = None) -> Message:
        """:meth:`call` without waiting for an unreachable server."""
        loop = asyncio.get_running_loop()
        timeout = self.config.request_timeout if timeout is None else timeout
        deadline = loop.time() + timeout
        backoff = FIRST_BACKOFF
        while True:
            kind = _checked_kind(self._named(request))
            named = self.registration
            sent = loop.time()
            connection = await self._connected(kind)
            with _naming(kind):
                try:
                    response = await connection.call(
                        request, pb.RpcResponse, timeout=max(deadline - loop.time(), 0.001)
                    )
                except errors.RequestTimeout:
                    await self._abandon(connection)
                    raise errors.RequestTimeout(
                        f"no reply from {self.config.server_addr} within {timeout:g}s"
                    ) from None
            answer = response.WhichOneof("response")
            if answer == "error":
                code, message = response.error.code, response.error.message
                if code == codes.UNAVAILABLE:
                    raise ServerUnavailable(f"{kind}: {message}")
                self.outage.answered(sent, loop.time())
                if code == codes.OVERLOADED and loop.time() + backoff < deadline:
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, LONGEST_BACKOFF)
                    continue
                if code == codes.SUPERSEDED:
                    if named != self.registration:
                        continue  # this channel registered again meanwhile
                    raise exceptions.Superseded(message)
                raise exceptions.ServerError(code, message)
            self.outage.answered(sent, loop.time())
            if answer != kind:
                raise errors.BadResponse(f"{kind}: expected a {kind} reply, got {answer or 'none'}")
            return getattr(response, kind)

    async def call_no_reply(self, request: pb.RpcRequest) -> None:
        """Send a request the server answers with an empty FIN (its effects are
        committed by then), and wait for that FIN, waiting for an unreachable
        server. (A refusal under overload or shutdown resets the stream.)"""
        loop = asyncio.get_running_loop()
        retry = Retry(self)
        while True:
            kind = _checked_kind(self._named(request))
            sent = loop.time()
            try:
                connection = await self._connected(kind)
                with _naming(kind):
                    try:
                        await connection.call_no_reply(request, timeout=self.config.request_timeout)
                    except errors.RequestTimeout:
                        await self._abandon(connection)
                        raise
            except errors.ClientError as error:
                await retry.after(error)
                continue
            self.outage.answered(sent, loop.time())
            return

    async def send(self, request: pb.RpcRequest) -> None:
        """Write ``request`` and stop reading its stream: the server carries it
        out but its answer, if any, is discarded. Waits for a connection."""
        retry = Retry(self)
        while True:
            kind = _checked_kind(self._named(request))
            try:
                connection = await self._connected(kind)
                connection.send(request)
                return
            except errors.ClientError as error:
                await retry.after(error)

    def transport_error(self, error: errors.ClientError) -> errors.ClientError:
        """``error`` marked as one of the transport (see :func:`from_the_transport`)."""
        return _transport(error)

    async def close(self) -> None:
        """Close the connection (a later call opens a new one); while the server is
        unreachable, without waiting for it to see the close."""
        connection, self._connection = self._connection, None
        if connection is not None:
            wait = 0 if self.outage.began is not None else 2.0
            with contextlib.suppress(errors.ClientError, OSError):
                await connection.close(wait=wait)

    async def _abandon(self, connection: Connection) -> None:
        """Stop using a connection that let a request time out: its server may be
        gone (killed, say), and the next call should open a new one."""
        if self._connection is connection:
            self._connection = None
        with contextlib.suppress(errors.ClientError, OSError):
            await connection.close(wait=0)

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
