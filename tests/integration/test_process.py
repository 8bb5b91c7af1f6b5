"""runtara-core as a process: start-up, configuration errors, signals, durability."""

from __future__ import annotations

import signal
import socket
import sqlite3
import threading

import pytest

from runtara.server import tls
from tests.support import RpcClient, ServerProcess, run_cli, wait_for


def test_default_start_serves_on_a_sqlite_file_in_the_working_directory(tmp_path):
    server = ServerProcess(cwd=tmp_path)
    try:
        output = server.output()
        assert "storage: sqlite" in output and str(tmp_path / "runtara.db") in output
        assert "synchronous=FULL" in output
        assert "SHA-256 fingerprint" in output and "self-signed for localhost" in output
        assert server.address[0] == "127.0.0.1"
        client = RpcClient(server.address)
        assert client.register("cli-instance").success
        client.close()
    finally:
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    assert "stopped" in server.output()
    rows = (
        sqlite3.connect(tmp_path / "runtara.db")
        .execute("SELECT instance_id FROM instances")
        .fetchall()
    )
    assert rows == [("cli-instance",)]


def test_sigint_also_stops_cleanly(tmp_path):
    server = ServerProcess("--driver", "sqlite", cwd=tmp_path)
    server.signal(signal.SIGINT)
    assert server.wait() == 0


def test_environment_variables_configure_the_server(tmp_path):
    server = ServerProcess(
        cwd=tmp_path,
        env={
            "RUNTARA_DATABASE_URL": f"sqlite:{tmp_path / 'elsewhere.db'}",
            "RUNTARA_MAX_CONCURRENT_INSTANCES": "3",
        },
    )
    try:
        assert "elsewhere.db" in server.output() and "with 3 workers" in server.output()
    finally:
        server.signal()
        assert server.wait() == 0


def test_flags_win_over_environment_variables(tmp_path):
    server = ServerProcess(
        "--max-concurrent", "5", cwd=tmp_path, env={"RUNTARA_MAX_CONCURRENT_INSTANCES": "3"}
    )
    try:
        assert "with 5 workers" in server.output()
    finally:
        server.signal()
        server.wait()


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--port", "70000"], {}, "--port / RUNTARA_QUIC_PORT: 70000 is out of range"),
        (
            [],
            {"RUNTARA_QUIC_PORT": "eighty"},
            "--port / RUNTARA_QUIC_PORT: 'eighty' is not a whole number",
        ),
        (
            [],
            {"RUNTARA_MAX_CONCURRENT_INSTANCES": "-1"},
            "--max-concurrent / RUNTARA_MAX_CONCURRENT_INSTANCES",
        ),
        (
            ["--host", "not-an-ip"],
            {},
            "--host / RUNTARA_QUIC_HOST: 'not-an-ip' is not an IP address",
        ),
        (["--shutdown-grace", "soon"], {}, "--shutdown-grace / RUNTARA_SHUTDOWN_GRACE_SECONDS"),
        (["--tls-cert", "x.pem"], {}, "go together"),
        (["--bogus"], {}, "unrecognized arguments: --bogus"),
        (["--driver", "nosuch"], {}, "no storage driver named 'nosuch'; installed drivers: "),
        (
            ["--database-url", "mysql://host/db"],
            {},
            "no installed storage driver accepts URLs of scheme 'mysql:'",
        ),
        (["--database-url", "sqlite:x.db?fsync=yes"], {}, "unknown SQLite option 'fsync'"),
        (["--database-url", "sqlite::memory:"], {}, "in-memory SQLite database"),
    ],
)
def test_bad_configuration_is_one_clear_line_and_exit_code_2(tmp_path, args, env, expected):
    result = run_cli(*args, cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("runtara-core: error: ") and expected in lines[0]
    assert "sqlite" in lines[0] if "installed drivers" in expected else True


def test_help_names_every_flags_variable_and_default(tmp_path):
    from runtara import config

    result = run_cli("--help", cwd=tmp_path, env={"COLUMNS": "400"})
    assert result.returncode == 0
    for setting in config.SERVER_SETTINGS:
        assert setting.flag in result.stdout and setting.env in result.stdout
    assert "[env RUNTARA_QUIC_PORT; default 8001]" in result.stdout


@pytest.mark.parametrize(
    "arguments, setting",
    [
        (("--port", "{taken}"), "--host/--port"),
        (("--port", "0", "--management-addr", "127.0.0.1:{taken}"), "--management-addr"),
        (("--port", "{taken}", "--processes", "2"), "--host/--port"),
    ],
    ids=["instance-port", "management-port", "several-processes"],
)
def test_a_port_in_use_is_named_with_its_cause(tmp_path, arguments, setting):
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    try:
        result = run_cli(*(item.format(taken=port) for item in arguments), cwd=tmp_path)
    finally:
        taken.close()
    assert result.returncode == 1
    assert (
        f"cannot listen on 127.0.0.1:{port} (UDP, {setting}): address already in use"
        in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_an_address_of_no_interface_is_named_with_its_cause(tmp_path):
    result = run_cli("--host", "192.0.2.1", "--port", "0", cwd=tmp_path)
    assert result.returncode == 1
    assert "cannot listen on 192.0.2.1:0 (UDP, --host/--port): no network interface" in (
        result.stderr
    )


def test_a_configured_certificate_is_served(tmp_path):
    identity = tls.self_signed()
    tls.write_pem(identity, tmp_path / "cert.pem", tmp_path / "key.pem")
    server = ServerProcess("--tls-cert", "cert.pem", "--tls-key", "key.pem", cwd=tmp_path)
    try:
        assert identity.fingerprint in server.output()
        client = RpcClient(server.address)
        assert client.register("tls").success
        client.close()
    finally:
        server.signal()
        server.wait()


def test_a_missing_certificate_file_is_a_clear_error(tmp_path):
    result = run_cli("--tls-cert", "nope.pem", "--tls-key", "nope.key", cwd=tmp_path)
    assert result.returncode == 2
    assert "--tls-cert / RUNTARA_TLS_CERT nope.pem" in result.stderr


def test_in_flight_requests_finish_on_sigterm(tmp_path):
    server = ServerProcess("--log-level", "debug", cwd=tmp_path)
    client = RpcClient(server.address)
    assert client.register("busy").success
    blocker = sqlite3.connect(tmp_path / "runtara.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # every write now waits
    replies = []
    thread = threading.Thread(
        target=lambda: replies.append(client.checkpoint("busy", "during-shutdown", b"kept"))
    )
    thread.start()
    try:
        wait_for(lambda: "checkpoint from" in server.output())
        server.signal(signal.SIGTERM)
        wait_for(lambda: "finishing in-flight requests" in server.output())
        blocker.execute("ROLLBACK")
        thread.join(10)
        assert server.wait() == 0
    finally:
        blocker.close()
        client.close()
    assert not replies[0].HasField("error") and not replies[0].checkpoint.found
    stored = (
        sqlite3.connect(tmp_path / "runtara.db")
        .execute("SELECT state FROM checkpoints WHERE checkpoint_id = 'during-shutdown'")
        .fetchall()
    )
    assert stored == [(b"kept",)]


@pytest.mark.parametrize("synchronous", ["full", "normal"])
def test_acknowledged_checkpoints_survive_sigkill(tmp_path, synchronous):
    url = f"sqlite:{tmp_path / 'runtara.db'}?synchronous={synchronous}"
    server = ServerProcess("--database-url", url, cwd=tmp_path)
    client = RpcClient(server.address)
    assert client.register("durable").success
    acknowledged = []
    for index in range(200):
        reply = client.checkpoint("durable", f"cp-{index}", f"state-{index}".encode())
        assert not reply.HasField("error")
        acknowledged.append(index)
    server.signal(signal.SIGKILL)
    server.wait()
    client.close()
    rows = dict(
        sqlite3.connect(tmp_path / "runtara.db").execute(
            "SELECT checkpoint_id, state FROM checkpoints"
        )
    )
    assert all(rows[f"cp-{index}"] == f"state-{index}".encode() for index in acknowledged)
    # and the server starts again on the same file
    again = ServerProcess("--database-url", url, cwd=tmp_path)
    try:
        client = RpcClient(again.address)
        got = client.get_checkpoint("durable", "cp-199").get_checkpoint
        assert got.found and got.state == b"state-199"
        client.close()
    finally:
        again.signal()
        again.wait()


def test_python_dash_m_and_the_console_script_are_the_same_program(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "runtara-core"
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert result.stdout == run_cli("--version", cwd=tmp_path).stdout
