"""``runtara-core --processes N``: several server processes on one UDP port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sys
import threading

from runtara import errors, records
from runtara.bench import run as bench_run
from runtara.config import StorageConfig
from runtara.storage import selection
from tests.support import RpcClient, ServerProcess, process_runs, run_cli, sqlite_url, wait_for

WORKFLOWS = os.path.join(os.path.dirname(__file__), "..", "workflows")


def children_of(server: ServerProcess) -> dict[int, int]:
    """Server process number -> pid, as the parent logged them (the latest start wins)."""
    started = {}
    for line in server.log:
        found = re.search(r"server process (\d+) started \(pid (\d+)\)", line)
        if found:
            started[int(found.group(1))] = int(found.group(2))
    return started


def figures(server: ServerProcess) -> dict[str, float]:
    """The server's GetStats counters, through its management service."""
    token = server.runtime().read_token
    return asyncio.run(bench_run.counters(server.management_address(), token))


def serving(server: ServerProcess) -> int:
    """How many server processes said they serve (one started again counts again)."""
    return sum("serving the runtara instance protocol" in line for line in server.log)


def start_two(tmp_path, *flags, session=False):
    return ServerProcess(
        "--processes",
        "2",
        "--database-url",
        sqlite_url(tmp_path),
        "--management-addr",
        "127.0.0.1:0",
        *flags,
        cwd=tmp_path,
        session=session,
    )


@contextlib.contextmanager
def stopped_after(server: ServerProcess):
    """The server, stopped with SIGTERM on leaving: it must exit 0."""
    try:
        yield server
    finally:
        server.signal(signal.SIGTERM)
        assert server.wait() == 0


def test_two_processes_serve_one_port_and_sum_their_figures(tmp_path):
    with stopped_after(start_two(tmp_path)) as server:
        wait_for(lambda: len(children_of(server)) == 2, 30)
        fingerprints = {
            line.rsplit(" ", 1)[1] for line in server.log if "SHA-256 fingerprint" in line
        }
        clients = [RpcClient(server.address) for _ in range(8)]
        for number, client in enumerate(clients):
            assert client.register(f"p{number}").success
            for step in range(5):
                assert not client.checkpoint(f"p{number}", f"s{step}", b"x").HasField("error")
        wait_for(lambda: len(fingerprints) == 1 and len(children_of(server)) == 2, 10)
        stats = wait_for(lambda: (f := figures(server))["completed"] >= 48 and f, 10)
        assert stats["processes"] == 2
        assert stats["completed"] == stats["process.0.completed"] + stats["process.1.completed"]
        for client in clients:
            client.close()
        host, port = server.management_address()
        shown = run_cli("stats", "--server", f"{host}:{port}", "--json", cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        counters = json.loads(shown.stdout)
        assert counters["processes"] == 2 and counters["completed"] >= 48
        total = counters["process.0.completed"] + counters["process.1.completed"]
        assert counters["completed"] == total
        listed = run_cli("stats", "--server", f"{host}:{port}", cwd=tmp_path).stdout
        assert re.search(r"^process\.1\.completed +\d+$", listed, re.MULTILINE)
        found = run_cli("stats", cwd=tmp_path)  # the server running here, found by itself
        assert found.returncode == 0 and "process.1.completed" in found.stdout
    assert all(not process_runs(pid) for pid in children_of(server).values())


def test_a_child_killed_under_load_loses_no_acknowledged_checkpoint_and_comes_back(tmp_path):
    server = start_two(tmp_path)
    acknowledged: list[tuple[str, str]] = []
    stop = threading.Event()

    def work(number: int) -> None:
        instance_id = f"load-{number}"
        client = RpcClient(server.address, timeout=3)
        client.register(instance_id)
        step = 0
        while not stop.is_set():
            step += 1
            try:
                reply = client.checkpoint(instance_id, f"s{step}", b"state")
            except errors.ClientError:
                client.close()  # its process was killed: connect again
                client = None
                # The kernel may steer the new connection to the killed process's
                # socket, where it waits for the successor's start: that can take
                # longer than one handshake's timeout.
                while client is None and not stop.is_set():
                    with contextlib.suppress(errors.ConnectFailed):
                        client = RpcClient(server.address, timeout=3)
                continue
            if not reply.HasField("error"):
                acknowledged.append((instance_id, f"s{step}"))
        if client is not None:
            client.close()

    try:
        # Not only started: a connection the kernel steers to a process still
        # starting waits for it, longer than the 3 s handshake timeout on a busy
        # machine.
        wait_for(lambda: serving(server) == 2, 30)
        workers = [threading.Thread(target=work, args=(n,)) for n in range(6)]
        for worker in workers:
            worker.start()
        wait_for(lambda: len(acknowledged) > 50, 30)
        os.kill(children_of(server)[1], signal.SIGKILL)
        wait_for(lambda: any("starting it again" in line for line in server.log), 10)
        before = len(acknowledged)
        wait_for(lambda: len(acknowledged) > before + 50, 30)
        stop.set()
        for worker in workers:
            worker.join()
    finally:
        stop.set()
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    storage = selection.open_driver(StorageConfig(database_url=sqlite_url(tmp_path)), workers=2)
    try:
        for instance_id, checkpoint_id in acknowledged:
            stored = storage.run(lambda tx, i=instance_id, c=checkpoint_id: tx.get_checkpoint(i, c))
            assert stored is not None, (instance_id, checkpoint_id)
    finally:
        storage.close()


def test_the_launcher_runs_once_among_the_processes(tmp_path):
    server = start_two(tmp_path, "--runs-dir", str(tmp_path / "runs"))
    try:
        started = run_cli(
            "start",
            "--database-url",
            sqlite_url(tmp_path),
            "--input",
            '{"n": 1}',
            "--",
            sys.executable,
            os.path.join(WORKFLOWS, "echo_input.py"),
            cwd=tmp_path,
        )
        assert started.returncode == 0, started.stderr
        instance_id = started.stdout.strip()
        storage = selection.open_driver(StorageConfig(database_url=sqlite_url(tmp_path)), workers=2)
        try:
            done = wait_for(
                lambda: (
                    (i := storage.run(lambda tx: tx.get_instance(instance_id))).status
                    is records.InstanceStatus.COMPLETED
                    and i
                ),
                60,
            )
            assert json.loads(done.output) == {"got": {"n": 1}}
        finally:
            storage.close()
        assert sum("instance processes, output in" in line for line in server.log) == 1
    finally:
        server.signal(signal.SIGTERM)
        assert server.wait() == 0


def test_ctrl_c_at_a_terminal_stops_every_process_gracefully(tmp_path):
    # A terminal's Ctrl-C reaches the whole foreground group: the parent and both
    # server processes get SIGINT, then the parent forwards SIGTERM. That is one
    # stop for each server process, not a second signal that exits at once.
    server = start_two(tmp_path, session=True)
    wait_for(lambda: sum("instance protocol on" in line for line in server.log) == 2, 10)
    os.killpg(server.process.pid, signal.SIGINT)
    assert server.wait() == 0
    assert sum("finishing in-flight requests" in line for line in server.log) == 2
    assert not any("exiting now" in line or "now" in line.split(":")[-1] for line in server.log)
    assert server.log[-1].endswith("stopped")


def test_the_server_processes_stop_when_their_parent_is_killed(tmp_path):
    server = start_two(tmp_path)
    wait_for(lambda: sum("instance protocol on" in line for line in server.log) == 2, 10)
    children = children_of(server)
    server.process.kill()
    server.wait()
    wait_for(lambda: not any(process_runs(pid) for pid in children.values()), 15)


def test_a_process_that_cannot_start_stops_the_server_instead_of_restarting(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:  # no SO_REUSEPORT: not shareable
        port = taken.getsockname()[1]
        result = run_cli(
            "--port", "0", "--processes", "2", "--database-url", sqlite_url(tmp_path),
            "--http-addr", f"127.0.0.1:{port}", cwd=tmp_path, timeout=30,
        )  # fmt: skip
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port} (TCP, --http-addr" in result.stderr
    assert "cannot start: stopping" in result.stderr
    assert "starting it again" not in result.stderr


def opened_by_process(server: ServerProcess) -> list[float]:
    stats = figures(server)
    return [stats.get(f"process.{number}.connections_opened", 0) for number in (0, 1)]


def test_new_clients_are_split_evenly_between_the_processes(tmp_path):
    with stopped_after(start_two(tmp_path)) as server:
        wait_for(lambda: serving(server) == 2, 30)
        clients = [RpcClient(server.address) for _ in range(8)]
        for number, client in enumerate(clients):
            assert client.register(f"even{number}").success
            for step in range(3):
                assert not client.checkpoint(f"even{number}", f"s{step}", b"x").HasField("error")
        # Every process's figures are published twice a second.
        opened = wait_for(lambda: sum(o := opened_by_process(server)) == 8 and o, 10)
        assert abs(opened[0] - opened[1]) <= 1, opened
        assert figures(server)["process.0.connections_handed_over"] >= 3
        for client in clients:
            client.close()


def assert_served_before_the_restart(server: ServerProcess, instance_id: str, killed: int):
    """A new client registers ``instance_id`` before the killed process serves again."""
    before = serving(server)
    client = RpcClient(server.address, timeout=3)
    assert client.register(instance_id).success
    assert serving(server) == before, f"process {killed} was back before the client was served"
    client.close()


def test_while_the_first_process_restarts_new_clients_go_to_the_other(tmp_path):
    with stopped_after(start_two(tmp_path)) as server:
        wait_for(lambda: serving(server) == 2, 30)
        os.kill(children_of(server)[0], signal.SIGKILL)
        wait_for(lambda: any("go to server process 1 first" in line for line in server.log), 10)
        assert_served_before_the_restart(server, "meanwhile", killed=0)


def test_each_line_names_its_process_and_shared_facts_are_said_once(tmp_path):
    with stopped_after(start_two(tmp_path)) as server:
        wait_for(lambda: serving(server) == 2, 30)
        serving_lines = [line for line in server.log if "serving the runtara instance" in line]
        assert sorted(re.search(r"\[process (\d)\]", line)[1] for line in serving_lines) == [
            "0",
            "1",
        ]
        for fact in ("storage: sqlite", "SHA-256 fingerprint", "serving the management protocol"):
            (line,) = [line for line in server.log if fact in line]
            assert "[process" not in line  # the parent's: about the whole server


def test_no_new_client_is_handed_to_a_process_being_restarted(tmp_path):
    server = start_two(tmp_path)
    clients = []
    try:
        wait_for(lambda: serving(server) == 2, 30)
        clients = [RpcClient(server.address) for _ in range(3)]  # process 0 gets two
        for number, client in enumerate(clients):
            assert client.register(f"held{number}").success
        wait_for(lambda: opened_by_process(server) == [2, 1], 10)
        os.kill(children_of(server)[1], signal.SIGKILL)  # the one with the fewest
        wait_for(lambda: any("starting it again" in line for line in server.log), 10)
        assert_served_before_the_restart(server, "late", killed=1)
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
