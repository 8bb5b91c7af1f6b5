"""The management service: upstream's messages, the token, and who may reach it."""

from __future__ import annotations

import asyncio
import time

from runtara.client.connection import Connection
from runtara.protocol import management_pb2 as mpb
from tests.support import ServerProcess, run_cli, sqlite_url, wait_for


def management_call(address, **oneof):
    async def call():
        connection = await Connection.open(*address, timeout=5)
        try:
            return await connection.call(mpb.RpcRequest(**oneof), mpb.RpcResponse, timeout=5)
        finally:
            await connection.close()

    return asyncio.run(call())


def test_upstream_management_messages_are_served(tmp_path):
    server = ServerProcess("--management-addr", "127.0.0.1:0", cwd=tmp_path)
    try:
        address = server.management_address()
        health = management_call(address, health_check=mpb.HealthCheckRequest()).health_check
        assert health.healthy and health.version == "0.1.0" and health.active_instances == 0
        status = management_call(
            address, get_instance_status=mpb.GetInstanceStatusRequest(instance_id="ghost")
        ).get_instance_status
        assert status.status == mpb.STATUS_UNKNOWN and status.error == "Instance not found"
        reply = management_call(
            address,
            send_signal=mpb.SendSignalRequest(instance_id="ghost", signal_type=mpb.SIGNAL_CANCEL),
        ).send_signal
        assert not reply.success and reply.error == "Instance 'ghost' not found"
        custom = management_call(
            address,
            send_custom_signal=mpb.SendCustomSignalRequest(
                instance_id="ghost", checkpoint_id="\x00"
            ),
        ).send_custom_signal
        assert not custom.success
        assert custom.error == "checkpoint_id must not contain NUL characters"
        listing = management_call(address, list_instances=mpb.ListInstancesRequest()).list_instances
        assert listing.total_count == 0
        empty = management_call(address)
        assert empty.error.code == "EMPTY_REQUEST"
    finally:
        server.signal()
        assert server.wait() == 0


def test_a_token_is_required_when_configured_and_refusals_are_logged(tmp_path):
    server = ServerProcess(
        "--management-addr", "127.0.0.1:0", "--management-token", "s3cret", cwd=tmp_path
    )
    try:
        host, port = server.management_address()
        target = ["--server", f"{host}:{port}"]
        missing = run_cli("instances", *target, cwd=tmp_path)
        assert missing.returncode == 1
        assert "refused the request: missing or wrong management token" in missing.stderr
        target.append("--insecure-skip-verify")  # a token is only sent once this is said
        wrong = run_cli("instances", *target, "--token", "guess", cwd=tmp_path)
        assert wrong.returncode == 1
        right = run_cli(
            "instances", *target, cwd=tmp_path, env={"RUNTARA_MANAGEMENT_TOKEN": "s3cret"}
        )
        assert right.returncode == 0 and right.stdout == "no instances\n"
        wait_for(lambda: sum("management token" in line for line in server.log) >= 2)
        assert any("missing management token" in line for line in server.log)
        assert any("wrong management token" in line for line in server.log)
    finally:
        server.signal()
        server.wait()


def test_exposing_the_management_service_needs_a_token(tmp_path):
    result = run_cli("--management-addr", "0.0.0.0:8002", "--port", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert "exposes the management service beyond loopback" in result.stderr


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


def test_health_without_a_server_checks_the_storage(tmp_path):
    missing = run_cli("health", "--database-url", sqlite_url(tmp_path), cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stdout == (
        f"unhealthy: no runtara database at sqlite {tmp_path / 'runtara.db'} (WAL, "
        "synchronous=FULL) (start the server or run `runtara-core migrate` first)\n"
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
