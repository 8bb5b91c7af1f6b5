"""The server's decisions, without sockets, threads or clocks of its own.

:class:`ServerCore` is a state machine in the manner of aioquic's connection:
the QUIC layer tells it what happened (a connection opened, stream bytes
arrived, a stream was reset, a worker finished, a timer fired) together with
the time, and it answers with :class:`Action` values saying what to do (write
a reply, reset or reject a stream, close a connection, run work on a worker,
start or cancel a timer). It owns every rule of the serving side: admission of
connections, request reassembly and the byte budgets, decoding,
authentication, admission of requests to the worker pool with its overload
policy, refusals during shutdown, durable-sleep bookkeeping, abandoned
streams and eviction. It runs on the event-loop thread only; the work it hands
out runs on workers and touches none of its state.

What running a request means is not its business: it is handed the operation
tables (in each :class:`Service`) and a :class:`Handling`, which turns a
decoded request into the work of a :class:`Job` and a refusal into a reply
frame.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Hashable, Mapping
from typing import Any, Protocol

import attrs
from google.protobuf.message import DecodeError, Message

from runtara import credentials as credentials_module
from runtara import metrics
from runtara.protocol import codes, streams

logger = logging.getLogger(__name__)

Connection = Hashable
"""The QUIC layer's handle of a connection; the core only compares and hashes it."""


class Operation(Protocol):
    """What the core reads of an entry of an operation table."""

    @property
    def name(self) -> str: ...

    @property
    def response_type(self) -> type[Message]: ...

    @property
    def role(self) -> Any: ...

    @property
    def replies(self) -> bool: ...


@attrs.frozen
class Work:
    """A request's work for a worker, as :class:`Handling` makes it."""

    run: Callable[[], Any]
    """Serve the request; returns the result :meth:`ServerCore.work_done` takes."""
    failed: Callable[[Exception], Any]
    """The result instead, when the storage could not commit the batch the request
    was served in: the storage error reply it would have had alone."""


@attrs.frozen
class Sleeping:
    """A worker's result for the first half of a durable sleep: answer once ``delay``
    seconds have passed, by the work ``Handling.finish_sleep(self)`` makes."""

    delay: float
    instance_id: str
    started: Any
    """What the handlers need to finish the sleep."""


class Handling(Protocol):
    """What the core is handed to turn requests into work and refusals into replies."""

    child_operations: frozenset[str]
    """The only operations a child credential of the request's ``parent_id`` allows."""

    def request(
        self, operation: Any, body: Message, registration: int | None, protocol: str
    ) -> Work: ...

    def finish_sleep(self, sleeping: Sleeping) -> Work: ...

    def error_frame(self, code: str, message: str, response_type: type[Message]) -> bytes: ...


@attrs.frozen
class Service:
    """One protocol served on one endpoint."""

    name: str
    request_type: type[Message]
    operations: Mapping[str, Operation]
    credentials: credentials_module.Credentials | None = None
    """When set, every request must carry one of them in ``RpcRequest.token``, the
    operate one for an operation that acts."""
    batched: bool = True
    """Whether its requests may be served together with others of the same loop
    pass (see :attr:`Job.batched`)."""

    @property
    def response_type(self) -> type[Message]:
        return next(iter(self.operations.values())).response_type


@attrs.frozen
class Limits:
    workers: int
    max_pending: int
    max_inflight_bytes: int
    max_connections: int
    """0: no limit."""
    max_incoming: int
    max_buffered_per_connection: int
    max_total_buffer: int


# --- actions ------------------------------------------------------------------


@attrs.frozen
class SendReply:
    """Write ``frame`` (nothing if None) on the stream and finish it."""

    connection: Connection
    stream_id: int
    frame: bytes | None


@attrs.frozen
class ResetStream:
    connection: Connection
    stream_id: int
    code: int


@attrs.frozen
class RejectStream:
    """The stream carried no valid request: ask the client to stop sending
    (``STREAM_REJECTED``) and finish it with no bytes."""

    connection: Connection
    stream_id: int


@attrs.frozen
class StopStream:
    """Ask the client to stop sending on a stream that will never be answered."""

    connection: Connection
    stream_id: int


@attrs.frozen
class CloseConnection:
    connection: Connection
    code: int
    reason: str


@attrs.frozen(eq=False)
class Job:
    """Work for a worker thread; its result goes back to :meth:`ServerCore.work_done`."""

    work: Callable[[], Any]
    failed: Callable[[Exception], Any]
    """See :attr:`Work.failed`."""
    connection: Connection
    stream_id: int
    operation: Operation
    size: int
    batched: bool
    """The QUIC layer may serve it together with the other batched jobs handed out
    in the same loop pass, in one storage batch; each job still counts alone here."""


@attrs.frozen
class Submit:
    job: Job


@attrs.frozen
class StartTimer:
    """Call :meth:`ServerCore.timer_fired` with ``key`` after ``delay`` seconds."""

    key: Hashable
    delay: float


@attrs.frozen
class CancelTimer:
    key: Hashable


Action = (
    SendReply | ResetStream | RejectStream | StopStream | CloseConnection | Submit | StartTimer
) | CancelTimer


# --- state --------------------------------------------------------------------


@attrs.define(eq=False)
class _Peer:
    """What the core knows of one connection."""

    service: Service
    address: str
    requests: streams.RequestStreams
    established: bool = False
    awaiting_reply: set[int] = attrs.Factory(set)
    """Streams whose request was accepted and not answered yet."""
    abandoned: set[int] = attrs.Factory(set)
    """Of those, the ones the client reset or stopped reading."""
    sleeping: dict[int, Sleeping] = attrs.Factory(dict)
    """Streams answering a durable sleep when its timer fires."""
    registrations: dict[str, int] = attrs.Factory(dict)
    """The registration this connection holds for each instance it registered."""


@attrs.frozen
class Registered:
    """A worker's result for a successful RegisterInstance: the reply frame, and
    the registration the connection now holds for the instance."""

    frame: bytes
    instance_id: str
    registration: int


def _is_bidirectional(stream_id: int) -> bool:
    return stream_id & 2 == 0


class ServerCore:
    def __init__(self, limits: Limits, handling: Handling) -> None:
        self.limits = limits
        self._handling = handling
        self.accepting = True
        self._peers: dict[Connection, _Peer] = {}
        self._buffers = streams.ByteBudget(limits.max_total_buffer)
        self._running = 0
        self._parked: collections.deque[Job] = collections.deque()
        self._admitted_bytes = 0
        self._failed_checks = credentials_module.FailedChecks()
        self.completed = 0
        self.rejected = 0

    # --- figures --------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """No request is running or parked."""
        return not self._running and not self._parked

    def snapshot(self) -> dict[str, float]:
        """The serving figures, as a new dict (safe to hand to other threads)."""
        return {
            "connections": len(self._peers),
            "running": self._running,
            "parked": len(self._parked),
            "completed": self.completed,
            "rejected": self.rejected,
            "admitted_bytes": self._admitted_bytes,
            "buffered_bytes": self._buffers.used,
            "sleeping": sum(len(peer.sleeping) for peer in self._peers.values()),
        }

    # --- connections ----------------------------------------------------------

    def connection_opened(
        self, connection: Connection, service: Service, address: str
    ) -> str | None:
        """Admit a new connection; the reason it is refused, or None."""
        if not self.accepting:
            return "server closing"
        limit = self.limits.max_connections
        if limit and len(self._peers) >= limit:
            logger.warning(
                "connection from %s refused: %d connections is the limit", address, limit
            )
            return "too many connections"
        handshaking = sum(1 for peer in self._peers.values() if not peer.established)
        if handshaking >= self.limits.max_incoming:
            logger.warning(
                "connection from %s refused: %d handshakes in progress", address, handshaking
            )
            return "too many handshakes in progress"
        self._peers[connection] = _Peer(
            service,
            address,
            streams.RequestStreams(
                max_buffered=self.limits.max_buffered_per_connection, shared=self._buffers
            ),
        )
        return None

    def handshake_completed(self, connection: Connection) -> None:
        peer = self._peers.get(connection)
        if peer is not None:
            peer.established = True

    def connection_closed(self, connection: Connection) -> list[Action]:
        """Forget the connection; its durable sleeps stay due for waking."""
        peer = self._peers.pop(connection, None)
        if peer is None:
            return []
        peer.requests.clear()
        return [CancelTimer((connection, stream_id)) for stream_id in peer.sleeping]

    def stop_accepting(self) -> list[Action]:
        """Shutdown begins: refuse new connections and requests; drop the sleeps in
        progress (their instances stay suspended and due for waking)."""
        self.accepting = False
        actions: list[Action] = []
        for connection, peer in self._peers.items():
            actions += [CancelTimer((connection, stream_id)) for stream_id in peer.sleeping]
            peer.sleeping.clear()
        return actions

    def closing_all(self) -> list[Action]:
        return [
            CloseConnection(connection, 0, "server closing") for connection in list(self._peers)
        ]

    # --- streams --------------------------------------------------------------

    def stream_data(
        self, connection: Connection, stream_id: int, data: bytes, end_stream: bool, now: float
    ) -> list[Action]:
        peer = self._peers.get(connection)
        if peer is None:
            return []
        if not _is_bidirectional(stream_id):
            # The protocol never uses unidirectional streams: ignore them.
            return [StopStream(connection, stream_id)] if data or not end_stream else []
        outcome = peer.requests.data_received(stream_id, data, end_stream, now)
        if isinstance(outcome, streams.RequestReceived):
            peer.awaiting_reply.add(stream_id)
            return self._request(connection, peer, stream_id, outcome.frame.payload, now)
        if isinstance(outcome, streams.StreamFailed):
            logger.warning(
                "bad frame from %s on stream %d: %s", peer.address, stream_id, outcome.error
            )
            actions: list[Action] = [RejectStream(connection, stream_id)]
            error = outcome.error
            if isinstance(error, streams.BufferLimitExceeded) and error.server_wide:
                actions += self._evict_largest()
            return actions
        return []

    def stream_reset(self, connection: Connection, stream_id: int) -> list[Action]:
        """The client abandoned its sending side."""
        peer = self._peers.get(connection)
        if peer is None:
            return []
        peer.requests.stream_reset(stream_id)
        if stream_id in peer.awaiting_reply:
            peer.abandoned.add(stream_id)
            return []
        # Nothing will ever be written on it: end our side too, or the stream
        # never completes and its credit is never given back.
        return [ResetStream(connection, stream_id, codes.STREAM_REJECTED)]

    def stop_sending(self, connection: Connection, stream_id: int) -> None:
        """The client will not read the reply."""
        peer = self._peers.get(connection)
        if peer is not None and stream_id in peer.awaiting_reply:
            peer.abandoned.add(stream_id)

    def expire(self, now: float, timeout: float) -> list[Action]:
        """End the streams whose request did not arrive whole within ``timeout`` seconds."""
        actions: list[Action] = []
        for connection, peer in self._peers.items():
            for stream_id in peer.requests.expire(now, timeout):
                logger.warning(
                    "request from %s on stream %d did not arrive within %gs; dropped",
                    peer.address,
                    stream_id,
                    timeout,
                )
                actions.append(RejectStream(connection, stream_id))
        return actions

    def _evict_largest(self) -> list[Action]:
        """The server-wide buffer budget ran out: close the connection that holds the
        most of it, so that one client cannot starve all the others."""
        connection, peer = max(
            self._peers.items(), key=lambda item: item[1].requests.buffered, default=(None, None)
        )
        if peer is None or peer.requests.buffered <= 0:
            return []
        logger.warning(
            "closing the connection from %s: it holds %d bytes of unfinished requests "
            "and the server's buffer budget is exhausted",
            peer.address,
            peer.requests.buffered,
        )
        peer.requests.clear()
        return [
            CloseConnection(connection, codes.CONNECTION_EVICTED, "too many unfinished requests")
        ]

    # --- requests -------------------------------------------------------------

    def _request(
        self, connection: Connection, peer: _Peer, stream_id: int, payload: bytes, now: float
    ) -> list[Action]:
        service = peer.service
        try:
            request = service.request_type.FromString(payload)
        except DecodeError as error:
            logger.warning(
                "invalid %s request from %s on stream %d: %s",
                service.name,
                peer.address,
                stream_id,
                error,
            )
            peer.awaiting_reply.discard(stream_id)
            return [RejectStream(connection, stream_id)]
        if service.credentials is not None:
            refusal = self._credential_refusal(service, peer, request, now)
            if refusal is not None:
                code, message = refusal
                metrics.request_refused(service.name, request.WhichOneof("request") or "none", code)
                frame = self._handling.error_frame(code, message, service.response_type)
                return [self._reply(connection, peer, stream_id, frame)]
        kind = request.WhichOneof("request")
        if kind is None:
            metrics.request_refused(service.name, "none", codes.EMPTY_REQUEST)
            frame = self._handling.error_frame(
                codes.EMPTY_REQUEST, "RpcRequest contained no request", service.response_type
            )
            return [self._reply(connection, peer, stream_id, frame)]
        operation = service.operations[kind]
        logger.debug("%s from %s on stream %d", kind, peer.address, stream_id)
        body = getattr(request, kind)
        if not self.accepting:
            return self._refuse(
                connection,
                peer,
                stream_id,
                operation,
                codes.UNAVAILABLE,
                "server is shutting down",
                request,
            )
        work = self._handling.request(
            operation, body, _registration(peer, request, body), service.name
        )
        job = Job(
            work.run,
            work.failed,
            connection,
            stream_id,
            operation,
            len(payload),
            service.batched,
        )
        actions = self._admit(job)
        if actions is None:
            return self._refuse(
                connection,
                peer,
                stream_id,
                operation,
                codes.OVERLOADED,
                f"server overloaded: {self._running} requests running and {len(self._parked)} "
                f"waiting ({self._admitted_bytes} bytes); retry later",
                request,
            )
        return actions

    def _admit(self, job: Job, must_run: bool = False) -> list[Action] | None:
        """Start the job, park it, or (None) refuse it: at most ``workers`` run, at most
        ``max_pending`` wait, and their payloads stay under ``max_inflight_bytes``.
        ``must_run`` work (the second half of an admitted request) is always taken."""
        limits = self.limits
        if (
            not must_run
            and self._admitted_bytes
            and self._admitted_bytes + job.size > limits.max_inflight_bytes
        ):
            self.rejected += 1
            return None
        if self._running < limits.workers:
            self._running += 1
            self._admitted_bytes += job.size
            return [Submit(job)]
        if must_run or len(self._parked) < limits.max_pending:
            self._admitted_bytes += job.size
            self._parked.append(job)
            return []
        self.rejected += 1
        return None

    def _credential_refusal(
        self, service: Service, peer: _Peer, request: Message, now: float
    ) -> tuple[str, str] | None:
        """Why a request of a service with credentials is refused (code, message), or
        None: no credential, a wrong one, a source refused for its failed checks, or
        the read credential for an operation that acts."""
        source = peer.address.rsplit(":", 1)[0]
        waiting = self._failed_checks.refused_for(source, now)
        if waiting is not None:
            return codes.UNAUTHENTICATED, (
                f"too many failed credential checks from {source}: try again in {waiting:.0f}s"
            )
        kind = request.WhichOneof("request")
        if kind in self._handling.child_operations and service.credentials.is_child_of(
            request.token, getattr(request, kind).parent_id
        ):
            return None
        role = service.credentials.role_of(request.token)
        if role is None:
            said = self._failed_checks.failed(source, now)
            if said is not None:
                logger.warning("%s: %s", service.name, said, extra=_refusal_context(request))
            return codes.UNAUTHENTICATED, "missing or wrong management credential"
        operation = service.operations.get(kind) if kind is not None else None
        if operation is not None and role < operation.role:
            return codes.PERMISSION_DENIED, (
                f"{kind} needs the operate credential; this one may only read"
            )
        return None

    def _refuse(
        self,
        connection: Connection,
        peer: _Peer,
        stream_id: int,
        operation: Operation,
        code: str,
        message: str,
        request: Message,
    ) -> list[Action]:
        context = _refusal_context(request)
        logger.warning(
            "%s%s from %s refused: %s",
            operation.name,
            f" for instance {context['instance_id']!r}" if context["instance_id"] else "",
            peer.address,
            message,
            extra=context,
        )
        metrics.request_refused(peer.service.name, operation.name, code)
        if operation.replies:
            frame = self._handling.error_frame(code, message, operation.response_type)
            return [self._reply(connection, peer, stream_id, frame)]
        peer.awaiting_reply.discard(stream_id)
        peer.abandoned.discard(stream_id)
        return [ResetStream(connection, stream_id, codes.STREAM_OVERLOADED)]

    def _reply(
        self, connection: Connection, peer: _Peer, stream_id: int, frame: bytes | None
    ) -> SendReply:
        peer.awaiting_reply.discard(stream_id)
        peer.abandoned.discard(stream_id)
        return SendReply(connection, stream_id, frame)

    def work_done(self, job: Job, result: Any) -> list[Action]:
        """A worker finished ``job`` with ``result`` (a frame, None, a sleep, or the
        exception that escaped it)."""
        self._running -= 1
        self._admitted_bytes -= job.size
        self.completed += 1
        actions: list[Action] = []
        if self._parked:
            self._running += 1
            actions.append(Submit(self._parked.popleft()))
        peer = self._peers.get(job.connection)
        if peer is None:
            return actions  # the connection is gone; the work is done all the same
        if isinstance(result, Sleeping):
            if self.accepting and job.stream_id not in peer.abandoned:
                peer.sleeping[job.stream_id] = result
                actions.append(StartTimer((job.connection, job.stream_id), result.delay))
            else:  # the instance stays suspended and due for waking
                peer.awaiting_reply.discard(job.stream_id)
                peer.abandoned.discard(job.stream_id)
        elif isinstance(result, Registered):
            peer.registrations[result.instance_id] = result.registration
            actions.append(self._reply(job.connection, peer, job.stream_id, result.frame))
        elif isinstance(result, BaseException):
            # A bug outside the handler: say "not done" rather than leave the stream open.
            peer.awaiting_reply.discard(job.stream_id)
            peer.abandoned.discard(job.stream_id)
            actions.append(ResetStream(job.connection, job.stream_id, codes.STREAM_FAILED))
        else:
            actions.append(self._reply(job.connection, peer, job.stream_id, result))
        return actions

    def timer_fired(self, key: Hashable) -> list[Action]:
        """A durable sleep is over: wake the instance, then answer (if anyone listens)."""
        connection, stream_id = key
        peer = self._peers.get(connection)
        started = None if peer is None else peer.sleeping.pop(stream_id, None)
        if started is None:
            return []
        if stream_id in peer.abandoned:
            logger.info(
                "instance %r left its sleep early; it stays due for waking",
                started.instance_id,
                extra={"instance_id": started.instance_id, "operation": "sleep"},
            )
            peer.awaiting_reply.discard(stream_id)
            peer.abandoned.discard(stream_id)
            return []
        work = self._handling.finish_sleep(started)
        job = Job(
            work.run,
            work.failed,
            connection,
            stream_id,
            peer.service.operations["sleep"],
            0,
            peer.service.batched,
        )
        return self._admit(job, must_run=True)


def _refusal_context(request: Message) -> dict[str, str | None]:
    """The ``extra=`` of the log line of a refused request (see
    runtara.logging_setup): its operation and instance, where it names them."""
    kind = request.WhichOneof("request")
    instance_id = getattr(getattr(request, kind), "instance_id", None) if kind else None
    return {"operation": kind, "instance_id": instance_id or None, "action": "refused"}


def _registration(peer: _Peer, request: Message, body: Message) -> int | None:
    """The registration a request comes with: the one it names (our SDK sends it, so
    that it holds across reconnections and servers), else the one its connection
    holds for the instance (how upstream clients, which send none, are fenced)."""
    if request.DESCRIPTOR.fields_by_name.get("registration") is None:
        return None  # the management protocol
    if request.HasField("registration"):
        return request.registration
    return peer.registrations.get(getattr(body, "instance_id", ""))
