"""The running server: one event-loop thread, one bounded worker pool, one driver.

:class:`InstanceServer` is the I/O half of the server: it owns the asyncio
loop thread, the UDP endpoints, the worker pool and the timers, and carries
out what the sans-I/O :class:`~runtara.server.core.ServerCore` decides, which
it hands the operation tables and the handlers (:mod:`handling`). Every QUIC
event goes to the core with the loop's time; every action the core returns is
performed here (stream writes through the connection, work on the pool, timers
on the loop).

One hand-off per loop pass, not per request: the instance requests the core
lets run during one pass of the loop go to the pool together, as one batch,
by one callback the first of them schedules. A worker serves the batch in one
storage batch (one transaction and one COMMIT for SQLite, see
:func:`handling.serve_together`) and queues all its results at once; the loop
is woken only if no wake-up is pending, so one ``call_soon_threadsafe``
carries them, and often other batches' too.

With a store that has one writer (``batches_writes``: SQLite), batches are
served one at a time, by one worker: when its batch is committed and its
results queued, it takes the requests that arrived meanwhile as the next
batch, without a round trip through the loop, and goes back to the pool when
none is waiting. A store that commits each request on its own (PostgreSQL)
gets its requests one by one, concurrently, as before: serving a batch on one
connection would queue their round trips.

The core still admits and counts each request alone, so the pool's bound and
the overload policy are unchanged (a batch holds one worker thread, and at
most ``max_concurrent`` requests run, batched or not). Management requests
are served one by one, outside batches: HealthCheck probes the database with a
write on a connection of its own, which would wait for the batch's open
transaction, and GetStats waits for the loop; they are few.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import logging
import os
import socket
import threading
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration

from runtara import aioquic_adapter, clock, errors, metrics
from runtara import config as config_module
from runtara import credentials as credentials_module
from runtara.handlers import dispatch
from runtara.handlers.services import Services
from runtara.protocol import instance_pb2 as pb
from runtara.protocol import management_pb2 as mpb
from runtara.server import (
    address_locks,
    binding,
    connection_journal,
    core,
    handling,
    quic,
    reset_secret,
    stateless_reset,
    supervisor,
    tls,
)
from runtara.storage import base

logger = logging.getLogger(__name__)

INSTANCE_SERVICE = core.Service("instance", pb.RpcRequest, dispatch.INSTANCE_OPERATIONS)
STATS_TIMEOUT = 5.0
REPLY_SETTLE = 1.0
"""Seconds a stopping server waits at most for its last replies to be acknowledged."""
ANNOUNCE_PAUSE = 0.05
"""Seconds to wait when the resets' rate limit holds back those sent unasked at a start."""


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed (it moves datagrams and timers in C), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class InstanceServer:
    """Serves the instance protocol (and, if configured, the management protocol)
    for one storage driver, which the caller owns."""

    def __init__(
        self,
        config: config_module.ServerConfig,
        storage: base.StorageDriver | None,
        *,
        identity: tls.Identity | None = None,
        now=clock.utc_now,
        instance_service: core.Service = INSTANCE_SERVICE,
        sockets: dict[str, socket.socket] | None = None,
        process: int | None = None,
        processes: int | None = None,
        credentials: credentials_module.Credentials | None = None,
        steerings: Mapping[str, aioquic_adapter.Steering] | None = None,
    ) -> None:
        self.config = config
        self._claims = address_locks.Claims(
            {"pid": os.getpid(), "storage": storage.describe() if storage else "none"}
        )
        """The locks of the addresses this server binds itself (one server per address)."""
        self.credentials = credentials or credentials_module.generate()
        """What the management service's requests must carry (generated when not given)."""
        self._sockets = sockets or {}
        """Bound UDP sockets to serve on instead of binding, by service name (a parent
        process that binds them for several server processes hands them down)."""
        self._steerings = steerings or {}
        """By service name, this process's part in sharing its socket's port with
        the other server processes."""
        if process is None:
            process, processes = supervisor.process_index() or 0, supervisor.process_count()
        self._process, self._processes = process, processes or 1
        """This server process's number among the processes serving its port, and
        their number (by default, what the parent that started it says)."""
        self._resets: stateless_reset.StatelessResets | None = None
        self._journal: connection_journal.ConnectionJournal | None = None
        self.shared_figures = None
        """With several server processes, their shared figures (a SharedFigures)."""
        self._instance_service = instance_service
        if identity is None:
            if config.tls_cert is not None:
                identity = tls.load(config.tls_cert, config.tls_key)
            else:
                identity = tls.self_signed()
        self.identity = identity
        self.services = Services(
            storage, now, counters=self.counters, runs_dir=config.runs_dir.absolute()
        )
        self.core = core.ServerCore(
            core.Limits(
                workers=config.max_concurrent,
                max_pending=config.max_pending,
                max_inflight_bytes=config.max_inflight_bytes,
                max_connections=config.max_connections,
                max_incoming=config.max_incoming,
                max_buffered_per_connection=config.max_buffered_per_connection,
                max_total_buffer=config.max_total_buffer,
            ),
            handling.Handling(self.services),
        )
        self.address: tuple[str, int] | None = None
        self.management_address: tuple[str, int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._endpoints: list[aioquic_adapter.AdmittingServer] = []
        self._endpoint_of: dict[str, aioquic_adapter.AdmittingServer] = {}
        """Each endpoint by the name of its service."""
        self._connections: dict[quic.ServerConnection, str] = {}
        """The admitted connections, and the name of the service of each."""
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._batching = storage is None or storage.batches_writes
        """Whether the requests of a loop pass are served together (else one by one)."""
        self._one_batch_at_a_time = storage is not None and storage.batches_writes
        """A store with one writer commits one batch at a time: one worker serves the
        batches, each taking the requests that arrived while the previous one ran."""
        self._to_submit: list[core.Job] = []
        """Batched jobs the core handed out that no worker has taken yet. The core
        counts them as running, so a stopping server waits for them too."""
        self._batch_lock = threading.Lock()
        """Guards ``_to_submit`` and ``_serving`` (one batch at a time only)."""
        self._serving = False
        """A worker is serving batches one after the other (one batch at a time only)."""
        self._submit_scheduled = False
        self.batches = 0
        """Batches served (see ``stats``: ``batches``)."""
        self._finished: collections.deque[tuple[core.Job, Any]] = collections.deque()
        self._wake_pending = False
        self._idle: asyncio.Event | None = None
        self._last_snapshot: dict[str, float] = self._snapshot()

    # --- life cycle -----------------------------------------------------------

    def start(self) -> None:
        """Bind the ports and start serving; raises ListenFailed if a port cannot be had
        (or the stateless reset secret in the runs folder cannot be read or made)."""
        sockets = self._bind()
        try:
            # After binding: a server that cannot have its port writes nothing.
            secret = reset_secret.load_or_create(self.config.runs_dir.absolute())
        except errors.ListenFailed:
            self._close_bound(sockets)
            raise
        self._resets = stateless_reset.StatelessResets(
            secret, process=self._process, processes=self._processes
        )
        self._journal = connection_journal.ConnectionJournal(
            self.config.runs_dir.absolute(),
            port=sockets["instance"].getsockname()[1],
            process=self._process,
            connection_id_length=self._resets.connection_id_length,
        )
        predecessors = self._journal.take_over()
        self._loop = new_event_loop()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.config.max_concurrent, thread_name_prefix="runtara-worker"
        )
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="runtara-quic", daemon=True
        )
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._open(sockets, predecessors), self._loop).result()
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()
            self._executor.shutdown(wait=False)
            self._journal.remove()
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
        self._last_snapshot = self._snapshot()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
        self._loop = None
        self._executor.shutdown(wait=drained, cancel_futures=True)
        self._claims.release()
        return drained

    def claim(self, kind: str, address: tuple[str, int], setting: str) -> None:
        """Hold another address this server serves (its HTTP port) until it stops;
        ListenFailed naming the server that has it."""
        self._claims.claim(kind, address, setting)

    def stats(self) -> dict[str, float]:
        """The core's figures, from any thread: asked of the loop thread, which owns them."""
        loop = self._loop
        if loop is None or threading.current_thread() is self._thread:
            return self._snapshot() if loop is not None else dict(self._last_snapshot)
        answer: concurrent.futures.Future[dict[str, float]] = concurrent.futures.Future()
        try:
            loop.call_soon_threadsafe(lambda: answer.set_result(self._snapshot()))
            return answer.result(STATS_TIMEOUT)
        except (RuntimeError, concurrent.futures.TimeoutError):  # the loop is stopping
            return dict(self._last_snapshot)

    def _snapshot(self) -> dict[str, float]:
        figures = self.core.snapshot()
        figures["batches"] = self.batches
        if self._resets is not None:
            figures.update(self._resets.counters())
        return figures

    def counters(self) -> dict[str, float]:
        """:meth:`stats` plus the storage driver's counters (``storage_`` prefix); with
        several server processes, every process's summed and each one's own."""
        own = self._own_counters()
        if self.shared_figures is None:
            return own
        return self.shared_figures.merged(own)

    def _own_counters(self) -> dict[str, float]:
        storage = self.services.storage
        driver = storage.stats() if storage is not None else {}
        return {**self.stats(), **{f"storage_{name}": value for name, value in driver.items()}}

    def publish_figures(self) -> None:
        """Hand this process's figures to its sibling server processes."""
        self.shared_figures.publish(self._own_counters())

    def _bind(self) -> dict[str, socket.socket]:
        """Each service's socket, handed down or bound here; ListenFailed if one cannot be."""
        config = self.config
        wanted = [("instance", config.host, config.port, "--host/--port")]
        if config.management_addr is not None:
            wanted.append(("management", *config.management_addr, "--management-addr"))
        bound: dict[str, socket.socket] = {}
        try:
            for name, host, port, setting in wanted:
                if name in self._sockets:
                    bound[name] = self._sockets[name]  # the parent holds its address
                    continue
                # Claimed before binding a chosen port (a server sharing it by
                # SO_REUSEPORT would take a share of its clients), after binding 0.
                self._claims.claim("udp", (host, port), setting)
                bound[name] = binding.bind_udp(host, port, setting=setting)
                self._claims.claim("udp", bound[name].getsockname(), setting)
        except errors.ListenFailed:
            self._close_bound(bound)
            raise
        return bound

    def _close_bound(self, sockets: dict[str, socket.socket]) -> None:
        """Close the sockets :meth:`_bind` bound itself (not those handed down), and
        give up their addresses."""
        for name, sock in sockets.items():
            if name not in self._sockets:
                sock.close()
        self._claims.release()

    async def _open(
        self, sockets: dict[str, socket.socket], predecessors: list[connection_journal.Entry]
    ) -> None:
        config = self.config
        self.address = await self._listen(sockets["instance"], self._instance_service)
        if config.management_addr is not None:
            service = core.Service(
                "management",
                mpb.RpcRequest,
                dispatch.MANAGEMENT_OPERATIONS,
                credentials=self.credentials,
                batched=False,  # see the module's docstring
            )
            self.management_address = await self._listen(sockets["management"], service)
        self._sweep()
        if predecessors:
            logger.info(
                "resetting the %d connections the previous server process on this port left open",
                len(predecessors),
            )
            self._announce_restart(collections.deque(predecessors))
        self._loop.call_later(connection_journal.REWRITE_EVERY, self._rewrite_journal)

    def _sweep(self) -> None:
        """Periodically give up on requests that stall half-way through their frame."""
        timeout = self.config.request_timeout
        self._perform(self.core.expire(self._loop.time(), timeout))
        if self.core.accepting:
            self._loop.call_later(min(timeout / 2, 5.0), self._sweep)

    def _announce_restart(self, entries: collections.deque[connection_journal.Entry]) -> None:
        """Reset, unasked, the connections this process's predecessor journaled:
        their clients may have nothing to send that would draw a reset. As fast
        as the resets' rate limit allows."""
        while entries:
            endpoint = self._endpoint_of.get(entries[0].service)
            if endpoint is None or endpoint.transport is None or endpoint.transport.is_closing():
                entries.popleft()  # a service not served now, or the server is stopping
                continue
            reset = self._resets.announcement(entries[0].connection_id)
            if reset is None:
                self._loop.call_later(ANNOUNCE_PAUSE, self._announce_restart, entries)
                return
            endpoint.transport.sendto(reset, entries.popleft().address)

    def _rewrite_journal(self) -> None:
        if self.core.accepting:  # else the journal is removed, or about to be
            self._journal.rewrite()
            self._loop.call_later(connection_journal.REWRITE_EVERY, self._rewrite_journal)

    async def _listen(self, sock: socket.socket, service: core.Service) -> tuple[str, int]:
        config = self.config
        quic_config = QuicConfiguration(
            is_client=False,
            alpn_protocols=None,  # upstream clients offer no ALPN
            idle_timeout=config.idle_timeout_ms / 1000,
            max_data=config.quic_max_data,
            max_stream_data=config.quic_max_stream_data,
            connection_id_length=self._resets.connection_id_length,
        )
        quic_config.certificate = self.identity.certificate
        quic_config.certificate_chain = list(self.identity.chain)
        quic_config.private_key = self.identity.private_key
        loop = asyncio.get_running_loop()
        transport, endpoint = await loop.create_datagram_endpoint(
            lambda: aioquic_adapter.AdmittingServer(
                configuration=quic_config,
                create_protocol=self._create_connection,
                admit=functools.partial(self._admit, service=service),
                connection_ids=self._resets,
                steering=self._steerings.get(service.name),
            ),
            sock=sock,
        )
        for option, size in (
            (socket.SO_RCVBUF, config.udp_recv_buffer),
            (socket.SO_SNDBUF, config.udp_send_buffer),
        ):
            if size:
                sock.setsockopt(socket.SOL_SOCKET, option, size)
        self._endpoints.append(endpoint)
        self._endpoint_of[service.name] = endpoint
        return sock.getsockname()[:2]

    async def _close(self, grace: float) -> bool:
        self._perform(self.core.stop_accepting())
        deadline = self._loop.time() + grace
        try:
            await asyncio.wait_for(self._wait_idle(), timeout=grace)
            drained = True
            # Closing a QUIC connection drops its unsent data: let the last
            # replies reach their clients first. A live client acknowledges
            # within a few round trips; one whose process died never does, so
            # the wait is short whatever the grace.
            for connection in self._connections:
                connection.transmit()
            settle = min(deadline, self._loop.time() + REPLY_SETTLE)
            while self._loop.time() < settle and any(
                c.replies_unacknowledged() for c in self._connections
            ):
                await asyncio.sleep(0.01)
        except asyncio.TimeoutError:
            figures = self.core.snapshot()
            logger.warning(
                "shutdown grace of %.1fs ran out with %d requests running and %d parked",
                grace,
                figures["running"],
                figures["parked"],
            )
            drained = False
        self._perform(self.core.closing_all())
        await asyncio.sleep(0.05)  # let the CONNECTION_CLOSE packets leave
        for endpoint in self._endpoints:
            if endpoint.transport is not None:
                endpoint.transport.close()
        self._journal.remove()  # every client was told by a CONNECTION_CLOSE
        return drained

    async def _wait_idle(self) -> None:
        while not self.core.idle:
            self._idle = asyncio.Event()
            await self._idle.wait()

    # --- connections ----------------------------------------------------------

    def _create_connection(self, quic_connection, stream_handler=None) -> quic.ServerConnection:
        aioquic_adapter.set_stream_limits(
            quic_connection, self.config.max_bi_streams, self.config.max_uni_streams
        )
        return quic.ServerConnection(
            quic_connection, host=self, keep_alive=self.config.keep_alive_ms / 1000
        )

    def _admit(
        self, connection: quic.ServerConnection, address: str, *, service: core.Service
    ) -> str | None:
        refusal = self.core.connection_opened(connection, service, address)
        metrics.connection_opened(service.name, refusal is None)
        if refusal is None:
            self._connections[connection] = service.name
        return refusal

    def quic_event(self, connection: quic.ServerConnection, event: events.QuicEvent) -> None:
        """What a connection reports: hand it to the core, carry out its answer."""
        if isinstance(event, events.StreamDataReceived):
            actions = self.core.stream_data(
                connection, event.stream_id, event.data, event.end_stream, self._loop.time()
            )
        elif isinstance(event, events.StreamReset):
            actions = self.core.stream_reset(connection, event.stream_id)
        elif isinstance(event, events.StopSendingReceived):
            self.core.stop_sending(connection, event.stream_id)
            return
        elif isinstance(event, events.HandshakeCompleted):
            self.core.handshake_completed(connection)
            self._journal_opened(connection)
            return
        elif isinstance(event, events.ConnectionTerminated):
            self._connections.pop(connection, None)
            self._journal.closed(aioquic_adapter.client_of(connection)[0])
            actions = self.core.connection_closed(connection)
        else:
            return
        self._perform(actions)

    def _journal_opened(self, connection: quic.ServerConnection) -> None:
        service = self._connections.get(connection)
        connection_id, address = aioquic_adapter.client_of(connection)
        if service is not None and address is not None:
            self._journal.opened(connection_journal.Entry(service, connection_id, address))

    # --- carrying out the core's actions -------------------------------------

    def _perform(self, actions: Iterable[core.Action]) -> None:
        for action in actions:
            if isinstance(action, core.SendReply):
                action.connection.send_reply(action.stream_id, action.frame)
            elif isinstance(action, core.Submit):
                self._submit(action.job)
            elif isinstance(action, core.ResetStream):
                action.connection.reset_stream(action.stream_id, action.code)
            elif isinstance(action, core.RejectStream):
                action.connection.reject_stream(action.stream_id)
            elif isinstance(action, core.StopStream):
                action.connection.stop_stream(action.stream_id)
            elif isinstance(action, core.StartTimer):
                self._timers[action.key] = self._loop.call_later(
                    action.delay, self._timer_fired, action.key
                )
            elif isinstance(action, core.CancelTimer):
                timer = self._timers.pop(action.key, None)
                if timer is not None:
                    timer.cancel()
            elif isinstance(action, core.CloseConnection):
                action.connection.close(error_code=action.code, reason_phrase=action.reason)

    def _timer_fired(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self._perform(self.core.timer_fired(key))

    def _submit(self, job: core.Job) -> None:
        if not job.batched or not self._batching:
            self._executor.submit(self._run_alone, job)
            return
        with self._batch_lock:
            self._to_submit.append(job)
        if not self._submit_scheduled:
            # After the callbacks of this pass: the requests they decode join the batch.
            self._submit_scheduled = True
            self._loop.call_soon(self._submit_batch)

    def _submit_batch(self) -> None:
        self._submit_scheduled = False
        if self._one_batch_at_a_time:
            with self._batch_lock:
                if self._serving or not self._to_submit:
                    return  # the worker serving takes them when its batch is committed
                self._serving = True
            self._executor.submit(self._serve_batches)
            return
        jobs, self._to_submit = self._to_submit, []
        if jobs:
            self._executor.submit(self._run_batch, jobs)

    def _serve_batches(self) -> None:
        """On a worker, for a store with one writer: serve batches one after the other,
        each made of the requests that arrived while the previous one ran, until
        none is waiting; no hand-off through the loop between two batches."""
        try:
            while True:
                with self._batch_lock:
                    jobs, self._to_submit = self._to_submit, []
                    if not jobs:
                        self._serving = False
                        return
                self._run_batch(jobs)
        except BaseException:
            # Whatever escaped, the next requests must still find a worker to serve them.
            with self._batch_lock:
                self._serving = False
            raise

    def _run_batch(self, jobs: list[core.Job]) -> None:
        # On a worker thread. Every job gets a result (see serve_together): the
        # streams are answered and the worker slots given back whatever happens.
        try:
            results = handling.serve_together(self.services, jobs)
        except BaseException as error:  # serve_together answers every job: a bug
            logger.exception("a batch of requests failed")
            results = [error] * len(jobs)
        with self._batch_lock:
            self.batches += 1
        self._finished.extend(zip(jobs, results, strict=True))
        self._wake()

    def _run_alone(self, job: core.Job) -> None:
        self._finished.append((job, handling.serve_alone(job)))
        self._wake()

    def _wake(self) -> None:
        """Have the loop take the finished jobs' results, unless it is about to."""
        if not self._wake_pending:
            self._wake_pending = True
            try:
                self._loop.call_soon_threadsafe(self._finish_batch)
            except RuntimeError:  # the loop is gone: the server stopped past its grace period
                pass

    def _finish_batch(self) -> None:
        # Reset before draining: a result queued after this point schedules a new batch.
        self._wake_pending = False
        finished = self._finished
        while finished:
            job, result = finished.popleft()
            self._perform(self.core.work_done(job, result))
        if self._idle is not None and self.core.idle:
            self._idle.set()
