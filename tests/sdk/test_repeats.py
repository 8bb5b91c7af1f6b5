"""What the SDK repeats, and what it does not, when its server goes away."""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import threading
import time
from pathlib import Path

import pytest
from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration

from runtara import records
from runtara.client.loop_thread import LoopThread
from runtara.config import ServerConfig
from runtara.protocol import framing
from runtara.protocol import instance_pb2 as pb
from runtara.records import EventFilter
from runtara.sdk import ConnectionLost, Ending, Instance, run
from runtara.server import tls
from runtara.server.app import InstanceServer
from runtara.storage import selection
from tests.sdk.conftest import config_for
from tests.support import sqlite_url, wait_for

STATUS = records.InstanceStatus


class RestartableServer:
    """An in-process server that can stop and start again on its port and database
    (an in-process start takes milliseconds, a process's seconds)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.address = ("127.0.0.1", 0)
        self.start()
        self.address = self.server.address

    def start(self) -> None:
        config = ServerConfig(
            port=self.address[1], database_url=sqlite_url(self.folder), runs_dir=self.folder
        )
        self.storage = selection.open_driver(config.storage, workers=config.max_concurrent)
        self.storage.migrate()
        self.server = InstanceServer(config, self.storage)
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=5)
        self.storage.close()

    def instance(self, instance_id: str) -> records.Instance:
        return self.storage.run(lambda tx: tx.get_instance(instance_id), write=False)

    def started_events(self, instance_id: str) -> int:
        only_started = EventFilter(event_type=records.EventType.STARTED)
        return len(
            self.storage.run(lambda tx: tx.list_events(instance_id, only_started), write=False)
        )


@pytest.mark.timeout(60)
def test_a_sleep_cut_off_by_a_restart_sleeps_only_what_remains(tmp_path):
    server = RestartableServer(tmp_path)
    config = config_for(server.address, server_wait_ms=30_000, request_timeout_ms=1000)
    outcome: list[BaseException | None] = []

    def sleep(instance: Instance) -> None:
        try:
            instance.sleep(3.0)
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    try:
        with Instance(config) as instance:
            instance.register()
            sleeper = threading.Thread(target=sleep, args=(instance,))
            sleeper.start()
            wait_for(lambda: server.instance("inst-1").status is STATUS.SUSPENDED)
            asked = server.instance("inst-1").sleep_until
            server.stop()  # drops the sleep: the instance stays suspended
            time.sleep(0.6)  # the server is away this long
            server.start()
            # the SDK registers again, which makes the instance running, and sleeps again
            wait_for(lambda: server.started_events("inst-1") == 2, timeout=20)
            wait_for(lambda: server.instance("inst-1").status is STATUS.SUSPENDED)
            resent = server.instance("inst-1").sleep_until
            sleeper.join(30)
            assert outcome == [None]
            assert instance.checkpoint("after the nap", b"").found is False
            # the same process registered again: it keeps its registration
            assert server.instance("inst-1").registration == 1
    finally:
        server.stop()
    # the second sleep ends when the first one would have: only what remained was
    # sent (sending it all again would end it 0.6 s later, at least)
    assert abs(resent - asked) < dt.timedelta(milliseconds=300), resent - asked


@pytest.mark.timeout(60)
def test_a_server_shutting_down_is_waited_for_like_a_stopped_one(tmp_path, caplog):
    server = RestartableServer(tmp_path)
    writer_free = threading.Event()
    found: list[bool] = []
    try:
        with Instance(config_for(server.address, server_wait_ms=30_000)) as instance:
            instance.register()
            # a heartbeat held in flight keeps the stopping server in its grace period
            threading.Thread(
                target=server.storage.run, args=(lambda tx: writer_free.wait(),)
            ).start()
            in_flight = threading.Thread(target=instance.heartbeat)
            in_flight.start()
            wait_for(lambda: server.server.stats()["running"] == 1)
            stopping = threading.Thread(target=server.stop)
            stopping.start()
            wait_for(lambda: not server.server.core.accepting)
            saving = threading.Thread(
                target=lambda: found.append(instance.checkpoint("step", b"1").found)
            )
            saving.start()
            wait_for(
                lambda: "(ServerUnavailable: checkpoint: server is shutting down)" in caplog.text
            )
            writer_free.set()
            stopping.join(30)
            server.start()
            saving.join(30)
            in_flight.join(30)
    finally:
        writer_free.set()
        server.stop()
    assert found == [False]  # saved by the server that came back
    assert caplog.text.count("is unreachable") == 1


def test_a_repeated_registration_keeps_the_number_in_use(server, make_config):
    # a process registering again names the registration it holds, and keeps it
    with Instance(make_config()) as instance:
        instance.register()
        instance.register()
        assert server.instance("inst-1").registration == 1
        assert instance.checkpoint("step", b"").found is False  # not superseded


def test_a_transport_error_the_workflow_raises_itself_is_its_failure(server, make_config):
    def workflow(instance):
        instance.checkpoint("step", b"")
        raise ConnectionLost("the payment service hung up")

    outcome = run(workflow, make_config())
    assert (outcome.ending, outcome.exit_code) == (Ending.FAILED, 1)
    assert server.instance("inst-1").error == "ConnectionLost: the payment service hung up"


class _WrongReplies(QuicConnectionProtocol):
    """A server that registers anyone and answers every other request with a reply
    of another kind; it notes the kind of each request."""

    seen: list[str]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._received: dict[int, bytearray] = {}

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if not isinstance(event, events.StreamDataReceived):
            return
        data = self._received.setdefault(event.stream_id, bytearray())
        data += event.data
        if not event.end_stream:
            return
        (frame,) = framing.FrameDecoder().feed(bytes(data))
        kind = pb.RpcRequest.FromString(frame.payload).WhichOneof("request")
        self.seen.append(kind)
        if kind == "register_instance":
            reply = pb.RpcResponse(
                register_instance=pb.RegisterInstanceResponse(success=True, registration=1)
            )
        else:
            reply = pb.RpcResponse(sleep=pb.SleepResponse())
        payload = framing.encode_frame(reply.SerializeToString())
        self._quic.send_stream_data(event.stream_id, payload, end_stream=True)
        self.transmit()


@contextlib.contextmanager
def wrong_replies_server(seen: list[str]):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    identity = tls.self_signed()
    configuration = QuicConfiguration(is_client=False, alpn_protocols=None)
    configuration.certificate = identity.certificate
    configuration.private_key = identity.private_key
    protocol = type("Recording", (_WrongReplies,), {"seen": seen})
    thread = LoopThread("wrong-replies")

    async def start():
        return await serve("127.0.0.1", port, configuration=configuration, create_protocol=protocol)

    server = thread.run(start())
    try:
        yield ("127.0.0.1", port)
    finally:
        thread.call(server.close)
        thread.stop()


def test_a_reply_the_sdk_cannot_read_ends_the_run_as_lost_never_failed():
    seen: list[str] = []

    def workflow(instance):
        instance.checkpoint("step", b"")
        return "not reached"

    with wrong_replies_server(seen) as address:
        outcome = run(workflow, config_for(address, server_wait_ms=30_000))
    assert (outcome.ending, outcome.exit_code) == (Ending.LOST_SERVER, 75)
    assert str(outcome.error) == "checkpoint: expected a checkpoint reply, got sleep"
    # not repeated (the same server answers the same), and no failure reported
    assert seen == ["register_instance", "checkpoint"]
