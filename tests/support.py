"""Helpers for tests: a blocking protocol client and a loopback server."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from runtara import runtime_files
from runtara.client.connection import Connection
from runtara.client.loop_thread import LoopThread
from runtara.config import ServerConfig, StorageConfig
from runtara.protocol import instance_pb2 as pb
from runtara.server.app import InstanceServer
from runtara.storage import base, selection


class InstanceCalls:
    """Shortcuts for the common instance requests, over a client's ``call``."""

    def call(self, **oneof) -> pb.RpcResponse:
        return self.request(pb.RpcRequest(**oneof))

    def register(
        self, instance_id: str, tenant_id: str = "tenant", checkpoint_id: str | None = None
    ):
        request = pb.RegisterInstanceRequest(instance_id=instance_id, tenant_id=tenant_id)
        if checkpoint_id is not None:
            request.checkpoint_id = checkpoint_id
        return self.call(register_instance=request).register_instance

    def checkpoint(
        self, instance_id: str, checkpoint_id: str, state: bytes = b""
    ) -> pb.RpcResponse:
        return self.call(
            checkpoint=pb.CheckpointRequest(
                instance_id=instance_id, checkpoint_id=checkpoint_id, state=state
            )
        )

    def get_checkpoint(self, instance_id: str, checkpoint_id: str) -> pb.RpcResponse:
        return self.call(
            get_checkpoint=pb.GetCheckpointRequest(
                instance_id=instance_id, checkpoint_id=checkpoint_id
            )
        )

    def event(
        self, instance_id: str, event_type: int, payload: bytes = b"", **fields
    ) -> pb.RpcResponse:
        return self.call(
            instance_event=pb.InstanceEvent(
                instance_id=instance_id, event_type=event_type, payload=payload, **fields
            )
        )

    def status(self, instance_id: str) -> pb.GetInstanceStatusResponse:
        return self.call(
            get_instance_status=pb.GetInstanceStatusRequest(instance_id=instance_id)
        ).get_instance_status

    def poll(self, instance_id: str, checkpoint_id: str | None = None) -> pb.PollSignalsResponse:
        request = pb.PollSignalsRequest(instance_id=instance_id)
        if checkpoint_id is not None:
            request.checkpoint_id = checkpoint_id
        return self.call(poll_signals=request).poll_signals

    def ack(self, instance_id: str, signal_type: int, acknowledged: bool = True) -> None:
        self.no_reply(
            signal_ack=pb.SignalAck(
                instance_id=instance_id, signal_type=signal_type, acknowledged=acknowledged
            )
        )


class RpcClient(InstanceCalls):
    """A blocking client speaking raw instance-protocol messages over real QUIC."""

    def __init__(self, address: tuple[str, int], *, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.loop = LoopThread("test-client")
        try:
            self.connection: Connection = self.loop.run(Connection.open(*address, timeout=timeout))
        except BaseException:
            self.loop.stop()
            raise

    def request(self, request: pb.RpcRequest) -> pb.RpcResponse:
        return self.loop.run(self.connection.call(request, pb.RpcResponse, timeout=self.timeout))

    def no_reply(self, **oneof) -> None:
        self.loop.run(self.connection.call_no_reply(pb.RpcRequest(**oneof), timeout=self.timeout))

    def fire(self, **oneof) -> None:
        self.loop.call(self.connection.send, pb.RpcRequest(**oneof))

    def raw(self, data: bytes, *, end: bool = True) -> bytes:
        """Send raw bytes on a new stream and return everything until the server's FIN."""

        async def exchange() -> bytes:
            stream = self.connection.open_stream()
            stream.send(data, end=end)
            try:
                return await stream.read_to_end()
            finally:
                stream.close()

        return self.loop.run(exchange(), self.timeout)

    def stream(self):
        return self.loop.call(self.connection.open_stream)

    def close(self) -> None:
        if self.loop.loop.is_closed():
            return
        with contextlib.suppress(Exception):
            self.loop.run(self.connection.close(), self.timeout)
        self.loop.stop()


class LoopbackServer:
    """An in-process server on 127.0.0.1 with a fresh port, over a real database."""

    def __init__(self, database_url: str, **settings) -> None:
        self.database_url = database_url
        self.kind = "postgres" if database_url.startswith("postgres") else "sqlite"
        # The server keeps its stateless reset secret in its runs folder: not in
        # the working directory.
        self._runs_dir = None if "runs_dir" in settings else Path(tempfile.mkdtemp())
        settings.setdefault("runs_dir", self._runs_dir)
        settings.setdefault("management_addr", None)  # asked for by the tests that use it
        self.config = ServerConfig(port=0, database_url=database_url, **settings)
        self.storage: base.StorageDriver = selection.open_driver(
            self.config.storage, workers=self.config.max_concurrent
        )
        self.storage.migrate()
        self.server = InstanceServer(self.config, self.storage)
        self.server.start()
        self.address = self.server.address
        self.credentials = self.server.credentials
        self._clients: list[RpcClient] = []

    def management_target(self, role: str = "operate") -> list[str]:
        """The tools' flags that reach this server's management service with its
        ``role`` credential, checking its certificate."""
        host, port = self.server.management_address
        return [
            "--server",
            f"{host}:{port}",
            "--token",
            getattr(self.credentials, role),
            "--fingerprint",
            self.server.identity.fingerprint,
        ]

    def client(self, **kwargs) -> RpcClient:
        client = RpcClient(self.address, **kwargs)
        self._clients.append(client)
        return client

    def read(self, work):
        """Run a read-only storage transaction (what is committed right now)."""
        return self.storage.run(work, write=False)

    def execute_sql(self, statement: str) -> None:
        """Run SQL directly against the server's database (to inject faults)."""
        if self.kind == "postgres":
            import psycopg

            with psycopg.connect(self.database_url, autocommit=True) as connection:
                connection.execute(statement)
        else:
            database = sqlite3.connect(self.database_url.removeprefix("sqlite:"))
            database.executescript(statement)
            database.close()

    def instance(self, instance_id: str):
        return self.read(lambda tx: tx.get_instance(instance_id))

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def stop(self) -> None:
        # Closing waits for each connection's draining period: do it in parallel.
        closers = [threading.Thread(target=client.close) for client in self._clients]
        for closer in closers:
            closer.start()
        for closer in closers:
            closer.join()
        self.server.stop(grace=5)
        self.storage.close()
        if self._runs_dir is not None:
            shutil.rmtree(self._runs_dir, ignore_errors=True)


def sqlite_url(folder: Path) -> str:
    return f"sqlite:{folder / 'runtara.db'}"


@contextlib.contextmanager
def migrated_storage(url: str, workers: int):
    """A storage driver over ``url`` with its schema migrated, closed on leaving."""
    driver = selection.open_driver(StorageConfig(database_url=url), workers=workers)
    try:
        driver.migrate()
        yield driver
    finally:
        driver.close()


def script_environment(
    address: tuple[str, int], instance_id: str, tenant_id: str = "acme", **extra: str
) -> dict[str, str]:
    """The environment of a workflow script run by hand: this process's, the variables
    a launcher would give (instance, tenant, the self-signed server at ``address``)
    and ``extra``."""
    host, port = address[:2]
    return {
        **os.environ,
        "RUNTARA_INSTANCE_ID": instance_id,
        "RUNTARA_TENANT_ID": tenant_id,
        "RUNTARA_SERVER_ADDR": f"{host}:{port}",
        "RUNTARA_SKIP_CERT_VERIFICATION": "true",
        **extra,
    }


def process_runs(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (a process that exited stays one
    until its parent reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def free_udp_port() -> int:
    """A UDP port of loopback that nothing holds now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """``python -m runtara`` in a child process, on a free port."""

    def __init__(
        self, *args: str, cwd: Path, env: dict[str, str] | None = None, session: bool = False
    ) -> None:
        """``session``: in a process group of its own, as a terminal's foreground job."""
        self.log: list[str] = []
        environment = {**os.environ, **(env or {})}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "runtara", "--port", "0", *args],
            cwd=cwd,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=session,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._ready = threading.Event()
        self.address: tuple[str, int] | None = None
        self._reader.start()
        if not self._ready.wait(30):
            self.kill()
            raise AssertionError("server did not start:\n" + "\n".join(self.log))

    def _read(self) -> None:
        for line in self.process.stderr:
            self.log.append(line.rstrip("\n"))
            match = re.search(r"instance protocol on ([\d.:a-f]+):(\d+)", line)
            if match:
                self.address = (match.group(1), int(match.group(2)))
                self._ready.set()
        self._ready.set()

    def signal(self, number: int = signal.SIGTERM) -> None:
        self.process.send_signal(number)

    def wait(self, timeout: float = 30) -> int:
        code = self.process.wait(timeout)
        self._reader.join(5)
        self.process.stderr.close()
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.wait()

    def output(self) -> str:
        return "\n".join(self.log)

    def management_address(self) -> tuple[str, int]:
        """Where the server's management service listens."""
        line = next(line for line in self.log if "management protocol on" in line)
        host, port = line.rsplit(" on ", 1)[1].split()[0].rsplit(":", 1)
        return host, int(port)

    def runtime(self, environ: dict[str, str] | None = None) -> runtime_files.RunningServer:
        """What the server's runtime file says (its credentials, its fingerprint),
        once it is written."""

        def written():
            environment = {**os.environ, **(environ or {})}
            found = [s for s in runtime_files.running(environment) if s.pid == self.process.pid]
            return found[0] if found else None

        return wait_for(written, 15)

    def management_target(self, role: str = "operate") -> list[str]:
        """The tools' flags that reach this server's management service with its
        ``role`` credential, checking its certificate."""
        running = self.runtime()
        return [
            "--server",
            running.management_addr,
            "--token",
            getattr(running, f"{role}_token"),
            "--fingerprint",
            running.fingerprint,
        ]


def wait_for(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60):
    return subprocess.run(
        [sys.executable, "-m", "runtara", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_by_cli(
    database_url: str,
    instance_id: str,
    *arguments: str,
    cwd: Path,
    env: dict[str, str] | None = None,
) -> None:
    """``runtara-core start`` of ``instance_id`` with ``arguments`` (the command after
    their ``--``); the start must be accepted."""
    started = run_cli(
        "start", "--database-url", database_url, "--id", instance_id, *arguments, cwd=cwd, env=env
    )
    assert started.returncode == 0, started.stderr
