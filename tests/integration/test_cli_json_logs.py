"""`--log-format json`: every line the server logs is one JSON object, and a known
run leaves exactly its lifecycle lines, with the instance they are about."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
from pathlib import Path

from runtara.client.connection import Connection
from runtara.protocol import instance_pb2 as pb
from runtara.protocol import management_pb2 as mpb
from tests.support import RpcClient, ServerProcess, run_cli, sqlite_url, wait_for

WORKFLOWS = Path(__file__).parent.parent / "workflows"
LIFECYCLE = (
    "launched",
    "relaunched",
    "registered",
    "suspended",
    "completed",
    "failed",
    "cancelled",
)


def entries(server: ServerProcess) -> list[dict]:
    return [json.loads(line) for line in list(server.log)]


def ask_without_token(address: tuple[str, int]) -> mpb.RpcResponse:
    async def call():
        connection = await Connection.open(*address, timeout=5)
        try:
            request = mpb.RpcRequest(list_instances=mpb.ListInstancesRequest())
            return await connection.call(request, mpb.RpcResponse, timeout=5)
        finally:
            await connection.close()

    return asyncio.run(call())


def test_a_known_run_logs_one_json_object_a_line_with_its_lifecycle(tmp_path):
    url = sqlite_url(tmp_path)
    server = ServerProcess(
        *("--log-format", "json", "--database-url", url, "--runs-dir", str(tmp_path / "runs")),
        *("--restart-backoff", "50ms", "--restart-backoff-max", "100ms"),
        *("--management-addr", "127.0.0.1:0", "--management-token", "t0ken-t0ken-t0ken"),
        cwd=tmp_path,
    )
    client = None
    try:
        started = run_cli(
            *("start", "--id", "pipeline", "--tenant", "acme", "--database-url", url),
            *("--env", f"EFFECTS={tmp_path / 'effects'}", "--env", "STEPS=3", "--env", "KILLS=1"),
            *("--env", f"KILLS_FILE={tmp_path / 'kills'}"),
            *("--", sys.executable, str(WORKFLOWS / "kill_loop.py")),
            cwd=tmp_path,
        )
        assert started.returncode == 0, started.stderr
        client = RpcClient(server.address)
        assert client.register("sleeper", "acme").success
        client.checkpoint("sleeper", "step-1", b"state")
        client.event("sleeper", pb.EVENT_SUSPENDED)
        assert client.register("broken", "acme").success
        client.event("broken", pb.EVENT_FAILED, b"disk on fire")
        assert client.register("stopped", "acme").success
        client.ack("stopped", pb.SIGNAL_CANCEL)
        assert not client.register("sleeper", "globex").success
        assert ask_without_token(server.management_address()).error.code == "UNAUTHENTICATED"
        wait_for(
            lambda: any(
                e.get("instance_id") == "pipeline" and e.get("action") == "completed"
                for e in entries(server)
            ),
            timeout=30,
        )
    finally:
        if client is not None:
            client.close()
        server.signal()
        assert server.wait() == 0
    logged = entries(server)  # every line parses
    for entry in logged:
        assert {"time", "level", "logger", "message"} <= set(entry), entry
        assert entry["time"].endswith("Z")
        assert dt.datetime.fromisoformat(entry["time"][:-1]).year >= 2024
    changes = [
        (entry["instance_id"], entry["action"])
        for entry in logged
        if entry.get("action") in LIFECYCLE
    ]
    assert [action for instance, action in changes if instance == "pipeline"] == [
        "launched",
        "registered",
        "relaunched",
        "registered",
        "completed",
    ]
    assert [change for change in changes if change[0] != "pipeline"] == [
        ("sleeper", "registered"),
        ("sleeper", "suspended"),
        ("broken", "registered"),
        ("broken", "failed"),
        ("stopped", "registered"),
        ("stopped", "cancelled"),
    ]
    by_change = {(e.get("instance_id"), e.get("action")): e for e in logged}
    assert by_change[("broken", "failed")]["message"] == "instance 'broken' failed: disk on fire"
    assert by_change[("sleeper", "registered")]["tenant"] == "acme"
    assert by_change[("pipeline", "launched")]["tenant"] == "acme"
    assert by_change[("pipeline", "completed")]["operation"] == "instance_event"
    refused = [e for e in logged if e.get("action") == "refused"]
    assert [(e.get("instance_id"), e.get("tenant"), e["operation"]) for e in refused] == [
        ("sleeper", "globex", "register_instance"),
        (None, None, "list_instances"),
    ]
    assert refused[1]["level"] == "warning"
    assert not [e for e in logged if e.get("operation") == "checkpoint"]  # routine: no line
    assert not [e for e in logged if e["logger"] == "quic" and e["level"] == "info"]
