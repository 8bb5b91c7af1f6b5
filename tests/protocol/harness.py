"""The server's core driven without sockets, threads or real time.

:class:`CoreServer` plays the part of the QUIC layer for a
:class:`runtara.server.core.ServerCore` over the in-memory driver: it feeds
request frames to the core as stream data, carries out the core's actions
(running submitted work at once, or holding it when asked), and keeps a
virtual clock for the core's timers and the storage's times. A
:class:`CoreClient` speaks raw protocol messages to it, with the same
methods as the QUIC test client, so the protocol behaviour tests run in
milliseconds.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Hashable

import attrs

from runtara.credentials import Credentials
from runtara.handlers import dispatch
from runtara.handlers.services import Services
from runtara.protocol import framing
from runtara.protocol import instance_pb2 as pb
from runtara.protocol import management_pb2 as mpb
from runtara.server import core, handling
from runtara.testing.memory import MemoryDriver
from tests.support import InstanceCalls

INSTANCE = core.Service("instance", pb.RpcRequest, dispatch.INSTANCE_OPERATIONS)

LIMITS = core.Limits(
    workers=32,
    max_pending=1024,
    max_inflight_bytes=256 << 20,
    max_connections=100,
    max_incoming=100,
    max_buffered_per_connection=256 << 20,
    max_total_buffer=512 << 20,
)


class ManualClock:
    """Wall-clock times that move 1 ms per reading (and on :meth:`advance`)."""

    def __init__(self) -> None:
        self.current = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone.utc)

    def now(self) -> dt.datetime:
        self.current += dt.timedelta(milliseconds=1)
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += dt.timedelta(seconds=seconds)


@attrs.define
class Answer:
    """What the core did on one stream."""

    frame: bytes | None = None
    finished: bool = False
    reset: int | None = None
    rejected: bool = False


class CoreServer:
    def __init__(
        self,
        limits: core.Limits = LIMITS,
        *,
        storage=None,
        credentials: Credentials | None = None,
    ) -> None:
        self.storage = storage or MemoryDriver()
        self.storage.migrate()
        self.clock = ManualClock()
        self.services = Services(self.storage, self.clock.now, counters=self.stats)
        self.core = core.ServerCore(limits, handling.Handling(self.services))
        self.management = core.Service(
            "management",
            mpb.RpcRequest,
            dispatch.MANAGEMENT_OPERATIONS,
            credentials=credentials,
            batched=False,
        )
        self.loop_time = 0.0
        self.hold_work = False
        """When set, submitted work waits in :attr:`held` until :meth:`release`."""
        self.held: list[core.Job] = []
        self.timers: dict[Hashable, float] = {}
        self.answers: dict[tuple[object, int], Answer] = {}
        self.closed: dict[object, tuple[int, str]] = {}

    def stats(self) -> dict[str, float]:
        return self.core.snapshot()

    def client(self, service: core.Service | None = None, address: str = "test") -> CoreClient:
        client = CoreClient(self)
        refusal = self.core.connection_opened(client, service or INSTANCE, address)
        assert refusal is None, refusal
        self.core.handshake_completed(client)
        return client

    def read(self, work):
        return self.storage.run(work, write=False)

    def instance(self, instance_id: str):
        return self.read(lambda tx: tx.get_instance(instance_id))

    def perform(self, actions) -> None:
        pending = list(actions)
        while pending:
            action = pending.pop(0)
            answer = None
            if hasattr(action, "stream_id"):
                answer = self.answers.setdefault((action.connection, action.stream_id), Answer())
            if isinstance(action, core.Submit):
                if self.hold_work:
                    self.held.append(action.job)
                else:
                    pending += self._run(action.job)
            elif isinstance(action, core.SendReply):
                answer.frame, answer.finished = action.frame, True
            elif isinstance(action, core.ResetStream):
                answer.reset = action.code
            elif isinstance(action, core.RejectStream):
                answer.rejected, answer.finished = True, True
            elif isinstance(action, core.StartTimer):
                self.timers[action.key] = self.loop_time + action.delay
            elif isinstance(action, core.CancelTimer):
                self.timers.pop(action.key, None)
            elif isinstance(action, core.CloseConnection):
                self.closed[action.connection] = (action.code, action.reason)
                pending += self.core.connection_closed(action.connection)

    def answered(self, client: CoreClient, stream_id: int) -> Answer:
        """What the stream got so far."""
        return self.answers.get((client, stream_id), Answer())

    def _run(self, job: core.Job) -> list[core.Action]:
        try:
            result = job.work()
        except Exception as error:
            result = error
        return self.core.work_done(job, result)

    def release(self) -> None:
        """Run the held work (and whatever it lets start)."""
        self.hold_work = False
        held, self.held = self.held, []
        for job in held:
            self.perform(self._run(job))

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of time pass, firing the timers that fall due."""
        until = self.loop_time + seconds
        while True:
            due = [(when, key) for key, when in self.timers.items() if when <= until]
            if not due:
                break
            when, key = min(due, key=lambda item: item[0])
            self.clock.advance(when - self.loop_time)
            self.loop_time = when
            del self.timers[key]
            self.perform(self.core.timer_fired(key))
        self.clock.advance(until - self.loop_time)
        self.loop_time = until


class CoreClient(InstanceCalls):
    """One connection to a :class:`CoreServer`."""

    def __init__(self, server: CoreServer) -> None:
        self.server = server
        self._stream_ids = itertools.count(0, 4)

    def send(self, data: bytes, *, end: bool = True, stream_id: int | None = None) -> int:
        stream_id = next(self._stream_ids) if stream_id is None else stream_id
        server = self.server
        server.perform(server.core.stream_data(self, stream_id, data, end, server.loop_time))
        return stream_id

    def answer(self, stream_id: int) -> Answer:
        """What the stream got, letting virtual time pass while a sleep is due."""
        server = self.server
        while True:
            answer = server.answered(self, stream_id)
            if answer.finished or answer.reset is not None or not server.timers:
                return answer
            server.advance(min(server.timers.values()) - server.loop_time)

    def request(self, request, response_type=pb.RpcResponse):
        frame = framing.encode_frame(request.SerializeToString(), framing.MessageType.REQUEST)
        answer = self.answer(self.send(frame))
        assert answer.frame, f"no reply: {answer}"
        (reply,) = framing.FrameDecoder().feed(answer.frame)
        return response_type.FromString(reply.payload)

    def no_reply(self, **oneof) -> None:
        frame = framing.encode_frame(
            pb.RpcRequest(**oneof).SerializeToString(), framing.MessageType.REQUEST
        )
        answer = self.answer(self.send(frame))
        assert answer.finished and not answer.frame, f"expected an empty FIN: {answer}"

    def fire(self, **oneof) -> None:
        frame = framing.encode_frame(
            pb.RpcRequest(**oneof).SerializeToString(), framing.MessageType.REQUEST
        )
        stream_id = self.send(frame)
        self.server.core.stop_sending(self, stream_id)

    def close(self) -> None:
        self.server.perform(self.server.core.connection_closed(self))
