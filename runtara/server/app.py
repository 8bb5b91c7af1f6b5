"""The running server: one event-loop thread, one bounded worker pool, one driver.

:class:`InstanceServer` wires the QUIC endpoints to the handlers: the instance
protocol on ``--port``, and the management protocol on ``--management-addr``
when set. The loop thread decodes each request and hands it to the dispatcher;
a worker runs the handler (one storage transaction) and returns the encoded
reply, which the loop writes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hmac
import logging
import socket
import threading
from collections.abc import Mapping
from typing import Any

import attrs
from aioquic.quic.configuration import QuicConfiguration
from google.protobuf.message import DecodeError, Message

from runtara import clock
from runtara import config as config_module
from runtara.handlers import management, operations
from runtara.handlers.services import Services
from runtara.handlers.sleep import SleepStarted
from runtara.protocol import instance_pb2 as pb
from runtara.protocol import management_pb2 as mpb
from runtara.protocol import streams
from runtara.server import dispatch, quic, tls
from runtara.storage import base

logger = logging.getLogger(__name__)

OVERLOADED = "OVERLOADED"
UNAVAILABLE = "UNAVAILABLE"
UNAUTHENTICATED = "UNAUTHENTICATED"
MiB = 1024 * 1024


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed (it moves datagrams and timers in C), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


@attrs.frozen
class Service:
    """One protocol served on one endpoint."""

    name: str
    request_type: type[Message]
    response_type: type[Message]
    operations: Mapping[str, operations.Operation]
    token: str | None = None
    """When set, every request must carry it in ``RpcRequest.token``."""


INSTANCE_SERVICE = Service("instance", pb.RpcRequest, pb.RpcResponse, operations.OPERATIONS)


class _ServiceSink:
    """Hands a connection's requests to the server, tagged with their service."""

    def __init__(self, server: InstanceServer, service: Service) -> None:
        self._server = server
        self._service = service

    def request_received(self, connection, stream_id: int, payload: bytes) -> None:
        self._server._request(self._service, connection, stream_id, payload)

    def connection_closed(self, connection) -> None:
        self._server._connection_closed(connection)

    def buffers_exhausted(self) -> None:
        self._server._evict_largest()


class InstanceServer:
    """Serves the instance protocol for one storage driver (which the caller owns)."""

    def __init__(
        self,
        config: config_module.ServerConfig,
        storage: base.StorageDriver,
        *,
        identity: tls.Identity | None = None,
        now=clock.utc_now,
        instance_service: Service = INSTANCE_SERVICE,
    ) -> None:
        self.config = config
        self._instance_service = instance_service
        if identity is None:
            if config.tls_cert is not None:
                identity = tls.load(config.tls_cert, config.tls_key)
            else:
                identity = tls.self_signed()
        self.identity = identity
        self.services = Services(storage, now, counters=self.counters)
        self.address: tuple[str, int] | None = None
        self.management_address: tuple[str, int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._endpoints: list[quic.Endpoint] = []
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._dispatcher: dispatch.Dispatcher | None = None
        self._connections: set[quic.InstanceConnection] = set()
        self._sleeping: dict[quic.InstanceConnection, dict[int, asyncio.TimerHandle]] = {}
        self._accepting = False

    # --- life cycle -----------------------------------------------------------

    def start(self) -> None:
        """Bind the port and start serving; raises OSError if the port is taken."""
        self._loop = new_event_loop()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.config.max_concurrent, thread_name_prefix="runtara-worker"
        )
        self._dispatcher = dispatch.Dispatcher(
            self._loop,
            self._executor,
            workers=self.config.max_concurrent,
            max_pending=self.config.max_pending,
            max_bytes=self.config.max_inflight_bytes,
        )
        self._buffers = streams.ByteBudget(self.config.max_total_buffer)
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="runtara-quic", daemon=True
        )
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._open(), self._loop).result()
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()
            self._executor.shutdown(wait=False)
            raise

    def stop(self, grace: float | None = None) -> bool:
        """Stop accepting, let in-flight requests finish (up to ``grace`` seconds),
        close every connection and the pool. Returns False if the grace ran out.

        Durable sleeps in progress are not waited for: their instances stay
        suspended and due for waking.
        """
        if self._loop is None:
            return True
        grace = self.config.shutdown_grace if grace is None else grace
        drained = asyncio.run_coroutine_threadsafe(self._close(grace), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
        self._loop = None
        self._executor.shutdown(wait=drained, cancel_futures=True)
        return drained

    def stats(self) -> dict[str, Any]:
        """Counters for monitoring and benchmarks (read from the loop thread's state)."""
        dispatcher = self._dispatcher
        return {
            "connections": len(self._connections),
            "running": dispatcher.running if dispatcher else 0,
            "parked": dispatcher.parked if dispatcher else 0,
            "completed": dispatcher.completed if dispatcher else 0,
            "rejected": dispatcher.rejected if dispatcher else 0,
            "admitted_bytes": dispatcher.admitted_bytes if dispatcher else 0,
            "buffered_bytes": self._buffers.used if dispatcher else 0,
            "sleeping": sum(len(timers) for timers in list(self._sleeping.values())),
        }

    def counters(self) -> dict[str, float]:
        """:meth:`stats` plus the storage driver's counters (``storage_`` prefix)."""
        storage = self.services.storage
        driver = storage.stats() if storage is not None else {}
        return {**self.stats(), **{f"storage_{name}": value for name, value in driver.items()}}

    async def _open(self) -> None:
        config = self.config
        self.address = await self._listen(config.host, config.port, self._instance_service)
        if config.management_addr is not None:
            service = Service(
                "management",
                mpb.RpcRequest,
                mpb.RpcResponse,
                management.OPERATIONS,
                token=config.management_token,
            )
            self.management_address = await self._listen(*config.management_addr, service)
        self._accepting = True
        self._sweep()

    def _sweep(self) -> None:
        """Periodically give up on requests that stall half-way through their frame."""
        timeout = self.config.request_timeout
        for connection in list(self._connections):
            connection.expire_requests(timeout)
        if self._accepting:
            self._loop.call_later(min(timeout / 2, 5.0), self._sweep)

    async def _listen(self, host: str, port: int, service: Service) -> tuple[str, int]:
        config = self.config
        quic_config = QuicConfiguration(
            is_client=False,
            alpn_protocols=None,  # upstream clients offer no ALPN
            idle_timeout=config.idle_timeout_ms / 1000,
            max_data=64 * MiB,
            max_stream_data=16 * MiB,
        )
        quic_config.certificate = self.identity.certificate
        quic_config.certificate_chain = list(self.identity.chain)
        quic_config.private_key = self.identity.private_key
        loop = asyncio.get_running_loop()
        sink = _ServiceSink(self, service)
        transport, endpoint = await loop.create_datagram_endpoint(
            lambda: quic.Endpoint(
                configuration=quic_config,
                create_protocol=functools.partial(self._create_connection, sink=sink),
                admit=self._admit,
            ),
            local_addr=(host, port),
        )
        sock: socket.socket = transport.get_extra_info("socket")
        for option, size in (
            (socket.SO_RCVBUF, config.udp_recv_buffer),
            (socket.SO_SNDBUF, config.udp_send_buffer),
        ):
            if size:
                sock.setsockopt(socket.SOL_SOCKET, option, size)
        self._endpoints.append(endpoint)
        return sock.getsockname()[:2]

    async def _close(self, grace: float) -> bool:
        self._accepting = False
        deadline = self._loop.time() + grace
        for timers in self._sleeping.values():
            for timer in timers.values():
                timer.cancel()
        self._sleeping.clear()
        try:
            await asyncio.wait_for(self._dispatcher.wait_idle(), timeout=grace)
            drained = True
            # Closing a QUIC connection drops its unsent data: let the last
            # replies reach their clients first.
            for connection in self._connections:
                connection.transmit()
            while self._loop.time() < deadline and any(
                c.replies_unacknowledged() for c in self._connections
            ):
                await asyncio.sleep(0.01)
        except asyncio.TimeoutError:
            logger.warning(
                "shutdown grace of %.1fs ran out with %d requests running and %d parked",
                grace,
                self._dispatcher.running,
                self._dispatcher.parked,
            )
            drained = False
        for connection in list(self._connections):
            connection.close(error_code=0, reason_phrase="server closing")
        await asyncio.sleep(0.05)  # let the CONNECTION_CLOSE packets leave
        for endpoint in self._endpoints:
            if endpoint.transport is not None:
                endpoint.transport.close()
        return drained

    # --- connections ----------------------------------------------------------

    def _create_connection(
        self, quic_connection, stream_handler=None, *, sink: _ServiceSink
    ) -> quic.InstanceConnection:
        for limit, value in (
            (quic_connection._local_max_streams_bidi, self.config.max_bi_streams),
            (quic_connection._local_max_streams_uni, self.config.max_uni_streams),
        ):
            # aioquic has no setting for these; they are sent in the transport
            # parameters of the first packet, after this point.
            limit.value = limit.sent = value
        connection = quic.InstanceConnection(
            quic_connection,
            sink=sink,
            max_buffered=self.config.max_buffered_per_connection,
            shared_buffer=self._buffers,
            keep_alive=self.config.keep_alive_ms / 1000,
        )
        return connection

    def _admit(self, connection: quic.InstanceConnection) -> str | None:
        if not self._accepting:
            return "server closing"
        limit = self.config.max_connections
        if limit and len(self._connections) >= limit:
            logger.warning("connection refused: %d connections is the limit", limit)
            return "too many connections"
        handshaking = sum(1 for c in self._connections if not c.established)
        if handshaking >= self.config.max_incoming:
            logger.warning("connection refused: %d handshakes in progress", handshaking)
            return "too many handshakes in progress"
        self._connections.add(connection)
        return None

    def _evict_largest(self) -> None:
        """The server-wide buffer budget ran out: close the connection that holds
        the most of it, so that one client cannot starve all the others."""
        hog = max(self._connections, key=lambda c: c.buffered, default=None)
        if hog is not None and hog.buffered > 0:
            hog.evict()

    def _connection_closed(self, connection: quic.InstanceConnection) -> None:
        self._connections.discard(connection)
        for timer in self._sleeping.pop(connection, {}).values():
            timer.cancel()

    # --- requests -------------------------------------------------------------

    def _request(
        self,
        service: Service,
        connection: quic.InstanceConnection,
        stream_id: int,
        payload: bytes,
    ) -> None:
        try:
            request = service.request_type.FromString(payload)
        except DecodeError as error:
            logger.warning(
                "invalid %s request from %s on stream %d: %s",
                service.name,
                connection.peer,
                stream_id,
                error,
            )
            connection.reject_stream(stream_id)
            return
        if service.token is not None and not hmac.compare_digest(
            request.token.encode(), service.token.encode()
        ):
            logger.warning(
                "%s request from %s refused: %s management token",
                service.name,
                connection.peer,
                "wrong" if request.token else "missing",
            )
            connection.send_reply(
                stream_id,
                operations.error_frame(
                    UNAUTHENTICATED, "missing or wrong management token", service.response_type
                ),
            )
            return
        kind = request.WhichOneof("request")
        if kind is None:
            connection.send_reply(
                stream_id,
                operations.error_frame(
                    operations.EMPTY_REQUEST,
                    "RpcRequest contained no request",
                    service.response_type,
                ),
            )
            return
        operation = service.operations[kind]
        logger.debug("%s from %s on stream %d", kind, connection.peer, stream_id)
        if not self._accepting:
            self._refuse(connection, stream_id, operation, UNAVAILABLE, "server is shutting down")
            return
        admitted = self._dispatcher.submit(
            functools.partial(operations.execute, operation, getattr(request, kind), self.services),
            functools.partial(self._deliver, connection, stream_id),
            size=len(payload),
        )
        if not admitted:
            dispatcher = self._dispatcher
            self._refuse(
                connection,
                stream_id,
                operation,
                OVERLOADED,
                f"server overloaded: {dispatcher.running} requests running and "
                f"{dispatcher.parked} waiting ({dispatcher.admitted_bytes} bytes); retry later",
            )

    def _refuse(
        self,
        connection: quic.InstanceConnection,
        stream_id: int,
        operation: operations.Operation,
        code: str,
        message: str,
    ) -> None:
        logger.warning("%s from %s refused: %s", operation.name, connection.peer, message)
        if operation.replies:
            connection.send_reply(
                stream_id, operations.error_frame(code, message, operation.response_type)
            )
        else:
            connection.reset_stream(stream_id, quic.STREAM_OVERLOADED)

    def _deliver(
        self, connection: quic.InstanceConnection, stream_id: int, outcome: operations.Outcome
    ) -> None:
        if isinstance(outcome, operations.Reply):
            connection.send_reply(stream_id, outcome.frame)
        elif isinstance(outcome, SleepStarted):
            self._start_sleep(connection, stream_id, outcome)
        elif isinstance(outcome, Exception):
            # A bug outside the handler: say "not done" rather than leave the stream open.
            connection.reset_stream(stream_id, quic.STREAM_FAILED)
        else:
            connection.send_reply(stream_id, None)

    def _start_sleep(
        self, connection: quic.InstanceConnection, stream_id: int, started: SleepStarted
    ) -> None:
        if connection.closed or not self._accepting:
            return  # the instance stays suspended and due for waking
        timer = self._loop.call_later(
            started.delay, self._sleep_over, connection, stream_id, started
        )
        self._sleeping.setdefault(connection, {})[stream_id] = timer

    def _sleep_over(
        self, connection: quic.InstanceConnection, stream_id: int, started: SleepStarted
    ) -> None:
        timers = self._sleeping.get(connection, {})
        timers.pop(stream_id, None)
        if not timers:
            self._sleeping.pop(connection, None)
        if connection.is_abandoned(stream_id):
            logger.info(
                "instance %r left its sleep early; it stays due for waking", started.instance_id
            )
            return
        self._dispatcher.submit(
            functools.partial(operations.finish_sleep, started, self.services),
            functools.partial(self._deliver, connection, stream_id),
            must_run=True,
        )
