"""A restarted server ends its predecessor's connections at once with a stateless
reset: unasked for the connections its predecessor journaled, and in answer to
the packets of any other; a server with another secret, or a sibling process,
cannot end them."""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import hmac
import logging
import os
import selectors
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from runtara import aioquic_adapter, errors
from runtara.config import ServerConfig, StorageConfig
from runtara.protocol import instance_pb2 as pb
from runtara.records import InstanceStatus
from runtara.sdk.channel import Channel
from runtara.sdk.config import SdkConfig
from runtara.server import binding, connection_journal
from runtara.server.app import InstanceServer
from runtara.server.reset_secret import FILE_NAME
from runtara.storage import selection
from tests.support import RpcClient, ServerProcess, sqlite_url, wait_for


class Served:
    """An in-process server on a chosen port (or bound socket), over its own SQLite file."""

    def __init__(
        self,
        folder: Path,
        runs_dir: Path,
        *,
        port: int = 0,
        sock: socket.socket | None = None,
        process: int | None = None,
        processes: int | None = None,
        **settings,
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.config = ServerConfig(
            port=port, database_url=sqlite_url(folder), runs_dir=runs_dir, **settings
        )
        self.storage = selection.open_driver(self.config.storage, workers=4)
        self.storage.migrate()
        self.server = InstanceServer(
            self.config,
            self.storage,
            sockets={"instance": sock} if sock is not None else None,
            process=process,
            processes=processes,
        )
        self.server.start()
        self.address = self.server.address

    def figure(self, name: str) -> float:
        return self.server.stats()[name]

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def stop(self) -> None:
        self.server.stop(grace=2)
        self.storage.close()


def status(database_url: str, instance_id: str) -> InstanceStatus:
    storage = selection.open_driver(StorageConfig(database_url=database_url), workers=1)
    try:
        return storage.run(lambda tx: tx.get_instance(instance_id), write=False).status
    finally:
        storage.close()


def killed_server(tmp_path: Path, runs_dir: Path) -> tuple[ServerProcess, RpcClient]:
    """A server process with a registered client."""
    first = ServerProcess(
        "--runs-dir",
        str(runs_dir),
        "--database-url",
        sqlite_url(tmp_path),
        "--no-launcher",
        cwd=tmp_path,
    )
    client = RpcClient(first.address, timeout=10)  # a third of the client's idle timeout
    assert client.register("inst-1").success
    return first, client


def journal_of(runs_dir: Path, port: int, process: int = 0) -> Path:
    return connection_journal.path_for(runs_dir, port=port, process=process)


def ended_by_a_reset(client: RpcClient) -> bool:
    terminated = client.connection._protocol.terminated
    return terminated is not None and (
        terminated.reason_phrase == aioquic_adapter.STATELESS_RESET_REASON
    )


def test_a_restarted_server_tells_a_client_that_sends_nothing_at_once(tmp_path):
    runs = tmp_path / "runs"
    first, client = killed_server(tmp_path, runs)
    journal = journal_of(runs, first.address[1])
    assert stat.S_IMODE(journal.lstat().st_mode) == 0o600
    server_id = client.connection._protocol._quic._peer_cid.cid
    own_address = client.connection._transport.get_extra_info("sockname")[:2]
    entry = connection_journal.Entry("instance", server_id, own_address)
    assert journal.read_bytes() == entry.line()
    # The server acknowledged the sleep and holds its reply back; the client,
    # reading no reply, has nothing to send (and no reason to ping).
    client.fire(sleep=pb.SleepRequest(instance_id="inst-1", duration_ms=60_000))
    wait_for(lambda: status(sqlite_url(tmp_path), "inst-1") == InstanceStatus.SUSPENDED, 10)
    first.kill()  # SIGKILL: the client's connection is never closed
    second = Served(tmp_path / "second", runs, port=first.address[1])
    try:
        wait_for(lambda: client.connection.closed, 10)  # a third of its idle timeout
        assert ended_by_a_reset(client)
        assert second.figure("stateless_resets_announced") == 1
        assert second.figure("stateless_resets_sent") == 0  # none answered: it sent nothing
        assert journal.read_bytes() == b""  # a fresh journal: nothing connected yet
        fresh = RpcClient(second.address)
        try:
            assert fresh.register("inst-1").success
            wait_for(lambda: journal.read_bytes().startswith(b"instance "), 5)
        finally:
            fresh.close()
    finally:
        client.close()
        second.stop()
    assert not journal.exists()  # a clean stop: its clients were told


def test_a_restarted_server_resets_a_connection_its_journal_does_not_name_when_it_sends(
    tmp_path,
):
    runs = tmp_path / "runs"
    first, client = killed_server(tmp_path, runs)
    first.kill()  # SIGKILL: the client's connection is never closed
    journal_of(runs, first.address[1]).unlink()  # as for a client whose address changed
    second = Served(tmp_path / "second", runs, port=first.address[1])
    try:
        with pytest.raises(errors.ConnectionLost, match="stateless reset"):
            client.checkpoint("inst-1", "cp-1", b"state")
        assert client.connection.closed
        assert second.figure("stateless_resets_sent") >= 1
        fresh = RpcClient(second.address)
        try:
            assert fresh.register("inst-1").success
            assert fresh.checkpoint("inst-1", "cp-1", b"state").checkpoint.found is False
        finally:
            fresh.close()
    finally:
        client.close()
        second.stop()


def test_a_client_waiting_for_an_acknowledged_request_notices_the_restart(tmp_path):
    # The server acknowledged the sleep and holds its reply back: the client has
    # nothing to retransmit, so only its probing ping can draw the reset.
    runs = tmp_path / "runs"
    first, client = killed_server(tmp_path, runs)
    outcome: list[BaseException | pb.RpcResponse] = []

    def sleep() -> None:
        try:
            outcome.append(
                client.call(sleep=pb.SleepRequest(instance_id="inst-1", duration_ms=60_000))
            )
        except errors.ClientError as error:
            outcome.append(error)

    sleeper = threading.Thread(target=sleep)
    sleeper.start()
    wait_for(lambda: status(sqlite_url(tmp_path), "inst-1") == InstanceStatus.SUSPENDED, 10)
    first.kill()
    journal_of(runs, first.address[1]).unlink()  # only the ping can tell it, then
    second = Served(tmp_path / "second", runs, port=first.address[1])
    try:
        sleeper.join(30)
        (error,) = outcome
        assert isinstance(error, errors.ConnectionLost) and "stateless reset" in str(error)
    finally:
        client.close()
        second.stop()


def test_the_sdk_reconnects_to_a_restarted_server_without_waiting_for_the_idle_timeout(
    tmp_path,
):
    runs = tmp_path / "runs"
    first, _ = killed_server(tmp_path, runs)
    config = SdkConfig(
        instance_id="inst-1",
        tenant_id="tenant",
        server_addr="{}:{}".format(*first.address),
        skip_cert_verification=True,
        request_timeout_ms=60_000,  # the idle timeout follows: 60 s
    )

    async def scenario() -> None:
        channel = Channel(config)
        request = pb.RpcRequest(
            get_instance_status=pb.GetInstanceStatusRequest(instance_id="inst-1")
        )
        await channel.call(request)
        first.kill()
        second = Served(tmp_path / "second", runs, port=first.address[1])
        try:
            # Far below the idle timeout, which is all a client without resets has.
            await asyncio.wait_for(channel.call(request), 10)
            assert second.figure("stateless_resets_announced") == 2  # the SDK's and the first
        finally:
            await channel.close()
            second.stop()

    asyncio.run(scenario())


def test_a_server_with_another_secret_cannot_end_the_connection(tmp_path):
    first, client = killed_server(tmp_path, tmp_path / "runs")
    first.kill()
    other = Served(tmp_path / "other", tmp_path / "other-runs", port=first.address[1])
    try:
        client.timeout = 1.5
        with pytest.raises(errors.RequestTimeout):
            client.checkpoint("inst-1", "cp-1", b"state")
        assert other.figure("stateless_resets_sent") >= 1  # sent, and not taken for ours
        assert not client.connection.closed
    finally:
        client.close()
        other.stop()


# --- the reset on the wire ---------------------------------------------------------


def short_header_packet(connection_id: bytes, size: int) -> bytes:
    return bytes([0x43]) + connection_id + os.urandom(size - 1 - len(connection_id))


def answer(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    return sock.recv(2048)


def silent(sock: socket.socket, wait: float = 0.3) -> bool:
    """Nothing arrives within ``wait`` seconds."""
    sock.settimeout(wait)
    try:
        sock.recv(2048)
    except TimeoutError:
        return True
    return False


@pytest.fixture
def prober():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    yield sock
    sock.close()


def test_resets_on_both_ports_are_smaller_than_their_trigger_and_carry_the_token(tmp_path, prober):
    runs = tmp_path / "runs"
    served = Served(tmp_path, runs, management_addr=("127.0.0.1", 0))
    secret = (runs / FILE_NAME).read_bytes()
    with served:
        for address in (served.address, served.server.management_address):
            for size in (22, 30, 43, 100, 1200):
                cid = bytes([0]) + os.urandom(7)
                prober.sendto(short_header_packet(cid, size), address)
                reset = answer(prober)
                assert 21 <= len(reset) < size
                assert reset[0] & 0xC0 == 0x40
                assert reset[-16:] == hmac.digest(secret, cid, hashlib.sha256)[:16]


def test_datagrams_too_small_for_a_smaller_reset_get_no_answer(tmp_path, prober):
    with Served(tmp_path, tmp_path / "runs") as served:
        cid = bytes(8)
        for size in (1, 9, 15, 21):
            prober.sendto(short_header_packet(cid, 22)[:size], served.address)
        prober.sendto(short_header_packet(cid, 22), served.address)  # the one answered
        assert len(answer(prober)) == 21
        assert silent(prober)
        assert served.figure("stateless_resets_sent") == 1


def test_resets_beyond_the_rate_limit_are_not_sent(tmp_path, prober):
    with Served(tmp_path, tmp_path / "runs", udp_recv_buffer=8 << 20) as served:
        started = time.monotonic()
        sent = 5000
        for number in range(sent):
            cid = bytes([0]) + number.to_bytes(7, "big")
            prober.sendto(short_header_packet(cid, 60), served.address)
        wait_for(
            lambda: (
                served.figure("stateless_resets_sent")
                + served.figure("stateless_resets_rate_limited")
                == sent
            ),
            timeout=30,
        )
        elapsed = time.monotonic() - started
        resets = served.figure("stateless_resets_sent")
        assert served.figure("stateless_resets_rate_limited") > 0
        # A burst of 1000, then 500 a second.
        assert 1000 <= resets <= 1000 + 500 * elapsed + 1


# --- two server processes on one port ------------------------------------------------

SO_ATTACH_REUSEPORT_CBPF = 51
SKF_NET_OFF = -0x100000


def steer_by_source_port_parity(sock: socket.socket) -> None:
    """Have the kernel give a datagram to the socket of its port group numbered
    (UDP source port mod 2) instead of to the one its address hashes to."""
    program = [
        (0x28, 0, 0, (SKF_NET_OFF + 20) & 0xFFFFFFFF),  # ldh: UDP source port (IPv4)
        (0x54, 0, 0, 1),  # and #1
        (0x16, 0, 0, 0),  # ret a
    ]
    code = b"".join(struct.pack("HBBI", *instruction) for instruction in program)
    buffer = ctypes.create_string_buffer(code, len(code))
    program_header = struct.pack("@HP", len(program), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, program_header)


def bound_with_parity(parity: int) -> socket.socket:
    while True:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        if sock.getsockname()[1] % 2 == parity:
            return sock
        sock.close()


class Relay:
    """Forwards a client's datagrams to a server port from an even or an odd
    source port, as a NAT that rebinds the client when ``parity`` changes."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.address = self.front.getsockname()
        self.outbound = [bound_with_parity(0), bound_with_parity(1)]
        self.parity = 0
        self._client: tuple[str, int] | None = None
        self._stopped = False
        self._selector = selectors.DefaultSelector()
        for sock in (self.front, *self.outbound):
            self._selector.register(sock, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped:
            for key, _ in self._selector.select(0.05):
                data, sender = key.fileobj.recvfrom(65536)
                if key.fileobj is self.front:
                    self._client = sender
                    self.outbound[self.parity].sendto(data, self.server)
                elif self._client is not None:
                    self.front.sendto(data, self._client)

    def stop(self) -> None:
        self._stopped = True
        self._thread.join()
        for sock in (self.front, *self.outbound):
            sock.close()


def test_a_process_leaves_a_siblings_connection_alone(tmp_path):
    first = binding.bind_udp("127.0.0.1", 0, setting="test", reuse_port=True)
    port = first.getsockname()[1]
    sockets = [first, binding.bind_udp("127.0.0.1", port, setting="test", reuse_port=True)]
    steer_by_source_port_parity(first)
    runs = tmp_path / "runs"
    servers = [
        Served(tmp_path / f"p{number}", runs, sock=sock, process=number, processes=2)
        for number, sock in enumerate(sockets)
    ]
    relay = Relay(("127.0.0.1", port))
    client = RpcClient(relay.address, timeout=5)
    try:
        assert client.register("inst-1").success
        assert servers[0].figure("connections") == 1  # even source port: process 0

        relay.parity = 1  # the client's packets now reach process 1
        client.timeout = 1.0
        with pytest.raises(errors.RequestTimeout):
            client.checkpoint("inst-1", "cp-1", b"state")
        assert servers[1].figure("stateless_resets_withheld") >= 1
        assert servers[1].figure("stateless_resets_sent") == 0
        assert not client.connection.closed

        relay.parity = 0  # back to process 0, which still serves the connection
        client.timeout = 5
        assert client.checkpoint("inst-1", "cp-2", b"state").checkpoint.found is False
    finally:
        client.close()
        relay.stop()
        for served in servers:
            served.stop()


def test_the_same_connection_id_is_reset_by_its_own_process_after_a_restart(tmp_path):
    # Process 1 of 2 starts again (same number, same secret): it resets what its
    # predecessor issued, though it still leaves process 0's alone.
    runs = tmp_path / "runs"
    served = Served(tmp_path, runs, process=1, processes=2)
    prober = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    prober.bind(("127.0.0.1", 0))
    try:
        secret = (runs / FILE_NAME).read_bytes()
        ids = {issuer: bytes([issuer]) + os.urandom(7) for issuer in (1, 0, 2)}
        for cid in ids.values():
            prober.sendto(short_header_packet(cid, 60), served.address)
        tokens = [answer(prober)[-16:], answer(prober)[-16:]]
        assert silent(prober)
        assert tokens == [hmac.digest(secret, ids[i], hashlib.sha256)[:16] for i in (1, 2)]
        assert served.figure("stateless_resets_withheld") == 1
    finally:
        prober.close()
        served.stop()


# --- the journal a restarted process reads -----------------------------------------


def write_journal(path: Path, *lines: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_bytes(b"".join(lines))
    path.chmod(0o600)


def journaled(prober: socket.socket, issuer: int) -> connection_journal.Entry:
    """A connection of a process numbered ``issuer`` whose client is ``prober``."""
    return connection_journal.Entry(
        "instance", bytes([issuer]) + os.urandom(7), prober.getsockname()[:2]
    )


def token(runs: Path, connection_id: bytes) -> bytes:
    return hmac.digest((runs / FILE_NAME).read_bytes(), connection_id, hashlib.sha256)[:16]


@pytest.fixture
def probers():
    sockets = []
    for _ in range(3):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    yield sockets
    for sock in sockets:
        sock.close()


def test_a_process_reads_only_the_journal_of_its_own_number_and_port(tmp_path, probers):
    runs = tmp_path / "runs"
    sock = binding.bind_udp("127.0.0.1", 0, setting="test", reuse_port=True)
    port = sock.getsockname()[1]
    mine, siblings, other_port = (
        journaled(probers[0], 1),
        journaled(probers[1], 0),
        journaled(probers[2], 1),
    )
    write_journal(journal_of(runs, port, process=1), mine.line())
    write_journal(journal_of(runs, port, process=0), siblings.line())
    write_journal(journal_of(runs, port + 1, process=1), other_port.line())
    with Served(tmp_path, runs, sock=sock, process=1, processes=2) as served:
        reset = answer(probers[0])
        assert 21 <= len(reset) <= 50 and reset[0] & 0xC0 == 0x40
        assert reset[-16:] == token(runs, mine.connection_id)
        assert silent(probers[0]) and silent(probers[1]) and silent(probers[2])
        assert served.figure("stateless_resets_announced") == 1
        assert journal_of(runs, port, process=0).read_bytes() == siblings.line()  # untouched


def test_unreadable_journal_lines_are_skipped_with_one_warning(tmp_path, probers, caplog):
    runs = tmp_path / "runs"
    sock = binding.bind_udp("127.0.0.1", 0, setting="test")
    port = sock.getsockname()[1]
    first, second = journaled(probers[0], 0), journaled(probers[1], 0)
    host, client_port = probers[2].getsockname()[:2]
    write_journal(
        journal_of(runs, port),
        first.line(),
        b"garbage\n",
        f"instance {bytes(7).hex()} {host} {client_port}\n".encode(),  # a short id
        f"instance {(bytes([1]) + bytes(7)).hex()} {host} {client_port}\n".encode(),  # process 1
        f"instance {bytes(8).hex()} 127.0.0.300 {client_port}\n".encode(),
        f"instance {bytes(8).hex()} {host} 70000\n".encode(),
        b"\xff\xfe\n",
        second.line(),
    )
    with caplog.at_level(logging.WARNING, logger="runtara.server.connection_journal"):
        served = Served(tmp_path, runs, sock=sock)
    with served:
        assert answer(probers[0])[-16:] == token(runs, first.connection_id)
        assert answer(probers[1])[-16:] == token(runs, second.connection_id)
        assert silent(probers[2])
        (warning,) = [r for r in caplog.records if r.name == "runtara.server.connection_journal"]
        assert "skipped 6 unreadable line(s)" in warning.getMessage()
        assert "the first: line 2" in warning.getMessage()


def test_a_journal_behind_a_symbolic_link_is_neither_read_nor_written(tmp_path, probers, caplog):
    runs = tmp_path / "runs"
    sock = binding.bind_udp("127.0.0.1", 0, setting="test")
    port = sock.getsockname()[1]
    target = tmp_path / "elsewhere"
    planted = journaled(probers[0], 0).line()
    write_journal(target, planted)
    runs.mkdir(mode=0o700)
    journal_of(runs, port).symlink_to(target)
    with caplog.at_level(logging.WARNING, logger="runtara.server.connection_journal"):
        served = Served(tmp_path, runs, sock=sock)
    client = RpcClient(served.address)
    try:
        assert client.register("inst-1").success
        assert silent(probers[0])
        assert "is a symbolic link" in caplog.text
        journal = journal_of(runs, port)
        assert stat.S_ISREG(journal.lstat().st_mode)
        assert stat.S_IMODE(journal.lstat().st_mode) == 0o600
        wait_for(lambda: journal.read_bytes().startswith(b"instance "), 5)
        assert target.read_bytes() == planted
    finally:
        client.close()
        served.stop()


def test_a_secret_that_cannot_be_used_stops_the_server_with_one_clear_line(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / FILE_NAME).write_bytes(b"short")
    (runs / FILE_NAME).chmod(0o600)
    finished = subprocess.run(
        [sys.executable, "-m", "runtara", "--port", "0", "--runs-dir", str(runs)]
        + ["--database-url", sqlite_url(tmp_path), "--no-launcher"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 1
    assert f"the stateless reset secret {runs / FILE_NAME} holds 5 bytes" in finished.stderr
    assert "Traceback" not in finished.stderr
