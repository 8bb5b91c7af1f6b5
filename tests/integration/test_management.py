"""The management service: upstream's messages, its two credentials, and how the
tools find the server running on their machine."""

from __future__ import annotations

import asyncio
import time

from runtara.client.connection import Connection
from runtara.protocol import management_pb2 as mpb
from tests.support import ServerProcess, run_cli, sqlite_url, wait_for


def management_call(address, token="", **oneof):
    async def call():
        connection = await Connection.open(*address, timeout=5)
        try:
            request = mpb.RpcRequest(token=token, **oneof)
            return await connection.call(request, mpb.RpcResponse, timeout=5)
        finally:
            await connection.close()

    return asyncio.run(call())


def test_upstream_management_messages_are_served(tmp_path):
    server = ServerProcess(cwd=tmp_path)  # the management service is on by default
    try:
        address = server.management_address()
        token = server.runtime().operate_token
        health = management_call(address, token, health_check=mpb.HealthCheckRequest())
        assert health.health_check.healthy and health.health_check.version == "0.1.0"
        status = management_call(
            address, token, get_instance_status=mpb.GetInstanceStatusRequest(instance_id="ghost")
        ).get_instance_status
        assert status.status == mpb.STATUS_UNKNOWN and status.error == "Instance not found"
        reply = management_call(
            address,
            token,
            send_signal=mpb.SendSignalRequest(instance_id="ghost", signal_type=mpb.SIGNAL_CANCEL),
        ).send_signal
        assert not reply.success and reply.error == "Instance 'ghost' not found"
        custom = management_call(
            address,
            token,
            send_custom_signal=mpb.SendCustomSignalRequest(
                instance_id="ghost", checkpoint_id="\x00"
            ),
        ).send_custom_signal
        assert not custom.success
        assert custom.error == "checkpoint_id must not contain NUL characters"
        listing = management_call(address, token, list_instances=mpb.ListInstancesRequest())
        assert listing.list_instances.total_count == 0
        empty = management_call(address, token)
        assert empty.error.code == "EMPTY_REQUEST"
    finally:
        server.signal()
        assert server.wait() == 0


def test_every_request_needs_a_credential_and_acting_needs_the_operate_one(tmp_path):
    server = ServerProcess(cwd=tmp_path)
    try:
        address = server.management_address()
        running = server.runtime()
        missing = management_call(address, health_check=mpb.HealthCheckRequest())
        assert missing.error.code == "UNAUTHENTICATED"
        wrong = management_call(address, "x" * 40, list_instances=mpb.ListInstancesRequest())
        assert wrong.error.code == "UNAUTHENTICATED"
        read = management_call(
            address, running.read_token, list_instances=mpb.ListInstancesRequest()
        )
        assert not read.HasField("error")
        act = mpb.SendSignalRequest(instance_id="ghost", signal_type=mpb.SIGNAL_CANCEL)
        refused = management_call(address, running.read_token, send_signal=act)
        assert refused.error.code == "PERMISSION_DENIED"
        assert "send_signal needs the operate credential" in refused.error.message
        allowed = management_call(address, running.operate_token, send_signal=act)
        assert allowed.send_signal.error == "Instance 'ghost' not found"
        wait_for(
            lambda: any("credential check from 127.0.0.1 failed" in line for line in server.log)
        )
    finally:
        server.signal()
        server.wait()


def test_guessing_a_credential_is_refused_after_ten_tries(tmp_path):
    server = ServerProcess(cwd=tmp_path)
    try:
        address = server.management_address()
        token = server.runtime().operate_token
        for guess in range(10):
            call = management_call(
                address, f"guess-{guess:04}-xxxxxxxx", get_stats=mpb.GetStatsRequest()
            )
            assert call.error.code == "UNAUTHENTICATED"
        # the right credential is refused too, for the rest of the minute
        late = management_call(address, token, get_stats=mpb.GetStatsRequest())
        assert late.error.code == "UNAUTHENTICATED"
        assert "too many failed credential checks from 127.0.0.1" in late.error.message
        logged = [line for line in server.log if "credential check" in line]
        assert len(logged) == 2  # the first failure and the refusal, not each guess
    finally:
        server.signal()
        server.wait()


def test_the_tools_find_the_server_running_on_their_machine(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    data = tmp_path / "data"
    data.mkdir()
    server = ServerProcess(cwd=data)
    try:
        server.runtime()
        # from another folder, with no --server and no --database-url
        started = run_cli("start", "--id", "found-1", "--", "true", cwd=project)
        assert started.returncode == 0, started.stderr
        shown = run_cli("show", "found-1", cwd=project)
        assert shown.returncode == 0 and "found-1" in shown.stdout
        health = run_cli("health", cwd=project)
        assert health.returncode == 0 and health.stdout.startswith("server ")
        assert list(project.iterdir()) == []  # nothing created where the tools ran
        second = ServerProcess(cwd=tmp_path / "data")
        try:
            second.runtime()
            several = run_cli("instances", cwd=project)
            assert several.returncode == 1
            assert "2 runtara-core servers run on this machine" in several.stderr
            named = run_cli("instances", "--server", second.runtime().management_addr, cwd=project)
            assert named.returncode == 0, named.stderr  # its credential from its runtime file
        finally:
            second.signal()
            second.wait()
    finally:
        server.signal()
        assert server.wait() == 0
    none = run_cli("show", "found-1", cwd=project)
    assert none.returncode == 1
    assert "no runtara-core server of this user runs on this machine" in none.stderr
    unhealthy = run_cli("health", cwd=project)
    assert unhealthy.returncode == 1 and unhealthy.stdout.startswith("unhealthy: no runtara-core")
    assert list(project.iterdir()) == []


def test_a_tool_pointed_at_the_instance_port_says_so(tmp_path):
    server = ServerProcess(cwd=tmp_path)
    try:
        host, port = server.address
        running = server.runtime()
        wrong = run_cli(
            "instances",
            "--server",
            f"{host}:{port}",
            "--token",
            running.operate_token,
            "--fingerprint",
            running.fingerprint,
            cwd=tmp_path,
        )
        assert wrong.returncode == 1
        assert "is a server's instance port, not its management service" in wrong.stderr
    finally:
        server.signal()
        server.wait()


def test_credentials_come_from_owner_only_files(tmp_path):
    operate = tmp_path / "operate.token"
    operate.write_text("operate-0123456789abcdef\n")
    operate.chmod(0o600)
    server = ServerProcess("--management-token-file", str(operate), cwd=tmp_path)
    try:
        assert server.runtime().operate_token == "operate-0123456789abcdef"
        host, port = server.management_address()
        token_file = run_cli(
            "instances",
            "--server",
            f"{host}:{port}",
            "--token-file",
            str(operate),
            "--fingerprint",
            server.runtime().fingerprint,
            cwd=tmp_path,
        )
        assert token_file.returncode == 0, token_file.stderr
    finally:
        server.signal()
        server.wait()
    operate.chmod(0o644)
    loose = run_cli("--management-token-file", str(operate), "--port", "0", cwd=tmp_path)
    assert loose.returncode == 2 and "can be read by other users" in loose.stderr
    short = run_cli("--management-token", "short", "--port", "0", cwd=tmp_path)
    assert short.returncode == 2 and "at least 16 characters" in short.stderr


def test_a_secret_on_the_command_line_is_warned_about(tmp_path):
    server = ServerProcess("--management-token", "operate-0123456789abcdef", cwd=tmp_path)
    try:
        server.runtime()
        assert any(
            "--management-token on the command line" in line and "RUNTARA_MANAGEMENT_TOKEN" in line
            for line in server.log
        )
    finally:
        server.signal()
        server.wait()


def test_an_unreachable_server_is_one_clear_line(tmp_path):
    started = time.monotonic()
    result = run_cli("show", "x", "--server", "127.0.0.1:9", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [lines[0]] and "no management service answers at 127.0.0.1:9" in lines[0]
    assert time.monotonic() - started < 30
    health = run_cli("health", "--server", "127.0.0.1:9", cwd=tmp_path)
    assert health.returncode == 1
    assert health.stdout.startswith("unhealthy: server 127.0.0.1:9: no management service answers")


def test_health_on_a_store_checks_the_storage(tmp_path):
    missing = run_cli("health", "--database-url", sqlite_url(tmp_path), cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stdout.startswith(
        f"unhealthy: no runtara database at sqlite {tmp_path / 'runtara.db'} (WAL, "
        "synchronous=FULL)"
    )
    assert not (tmp_path / "runtara.db").exists()  # a health check creates nothing
    assert run_cli("migrate", "--database-url", sqlite_url(tmp_path), cwd=tmp_path).returncode == 0
    good = run_cli("health", "--database-url", sqlite_url(tmp_path), cwd=tmp_path)
    assert good.returncode == 0 and good.stdout.startswith("storage sqlite ")
    assert good.stdout.strip().endswith("is reachable and writable")
    bad = run_cli("health", "--database-url", "postgresql://nobody@127.0.0.1:1/x", cwd=tmp_path)
    assert bad.returncode == 1
    assert bad.stdout.startswith(
        "unhealthy: storage postgresql://nobody@127.0.0.1:1/x: cannot connect"
    )
