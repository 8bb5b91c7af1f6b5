"""The operator commands against a real server and database: directly on the
storage, and through the management service with --server."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys

import pytest

from runtara.protocol import instance_pb2 as pb
from tests.support import LoopbackServer, run_cli


class Operator:
    """Runs commands the way an operator would: on the storage, or via --server."""

    def __init__(self, server: LoopbackServer, target: list[str], folder) -> None:
        self.server = server
        self.target = target
        self.folder = folder

    def __call__(self, command: str, *args: str) -> subprocess.CompletedProcess:
        return run_cli(command, *args, *self.target, cwd=self.folder)

    def stdout_bytes(self, command: str, *args: str) -> bytes:
        result = subprocess.run(
            [sys.executable, "-m", "runtara", command, *args, *self.target],
            cwd=self.folder,
            capture_output=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout


@pytest.fixture(params=["direct", "remote"])
def cli(request, database_url, tmp_path):
    server = LoopbackServer(database_url, management_addr=("127.0.0.1", 0))
    if request.param == "direct":
        target = ["--database-url", database_url]
    else:
        target = server.management_target()
    yield Operator(server, target, tmp_path)
    server.stop()


def fields_of(text: str) -> dict[str, str]:
    """The ``name  value`` lines of `show`, up to the first blank line."""
    head = text.split("\n\n")[0]
    return dict(re.match(r"^(.+?)\s{2,}(.*)$", line).groups() for line in head.splitlines())


def ok(result):
    assert result.returncode == 0, result.stderr
    return result.stdout


def refused(result, text):
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("runtara-core: error: "), result.stderr
    assert text in lines[0]


def test_signal_reaches_the_instance_and_replaces_the_pending_one(cli, tmp_path):
    client = cli.server.client()
    assert client.register("job").success
    assert ok(cli("signal", "job", "pause")) == "pause sent to job\n"
    (tmp_path / "reason.txt").write_bytes(b"operator: \xffstop")
    ok(cli("signal", "job", "cancel", "--payload", f"@{tmp_path / 'reason.txt'}"))
    reply = client.checkpoint("job", "step", b"").checkpoint
    assert reply.pending_signal.signal_type == pb.SIGNAL_CANCEL
    assert reply.pending_signal.payload == b"operator: \xffstop"


def test_signals_to_unknown_and_finished_instances_are_refused(cli):
    refused(cli("signal", "ghost", "cancel"), "Instance 'ghost' not found")
    client = cli.server.client()
    client.register("done")
    client.event("done", pb.EVENT_COMPLETED, b"ok")
    refused(
        cli("signal", "done", "resume"),
        "Cannot send signal to instance in 'completed' state (terminal state)",
    )
    refused(cli("custom-signal", "done", "cp"), "terminal state")


def test_custom_signal_is_taken_by_the_checkpoint_it_names(cli):
    client = cli.server.client()
    client.register("approval")
    ok(cli("custom-signal", "approval", "approve-order", "--payload", "yes"))
    assert not client.checkpoint("approval", "other", b"").checkpoint.HasField("custom_signal")
    reply = client.checkpoint("approval", "approve-order", b"").checkpoint
    assert reply.custom_signal.payload == b"yes"
    refused(cli("custom-signal", "approval", ""), "checkpoint_id is required")


def test_a_missing_payload_file_is_a_usage_error(cli, tmp_path):
    result = cli("signal", "anything", "cancel", "--payload", f"@{tmp_path / 'missing.txt'}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"runtara-core: error: --payload @{tmp_path / 'missing.txt'}: cannot read "
        f"{tmp_path / 'missing.txt'}: No such file or directory"
    ]


def test_instances_filters_pages_and_prints_json(cli):
    client = cli.server.client()
    for index in range(5):
        client.register(f"i{index}", "acme" if index % 2 else "globex")
    client.event("i3", pb.EVENT_COMPLETED, b"")
    table = ok(cli("instances"))
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["INSTANCE", "TENANT", "STATUS"]
    assert [line.split()[0] for line in lines[1:-1]] == ["i4", "i3", "i2", "i1", "i0"]
    assert lines[-1] == "instances 1-5 of 5"
    assert (
        ok(cli("instances", "--tenant", "acme", "--status", "running")).splitlines()[1].split()[0]
        == "i1"
    )
    assert (
        ok(cli("instances", "--limit", "2", "--offset", "1")).splitlines()[-1]
        == "instances 2-3 of 5"
    )
    page = json.loads(ok(cli("instances", "--status", "completed", "--json")))
    assert page["total"] == 1 and page["items"][0]["instance_id"] == "i3"
    assert page["items"][0]["status"] == "completed"


def test_show_describes_one_instance(cli):
    client = cli.server.client()
    client.register("order-9", "acme")
    client.checkpoint("order-9", "charged", b"{}")
    client.call(
        instance_event=pb.InstanceEvent(
            instance_id="order-9",
            event_type=pb.EVENT_CUSTOM,
            subtype="progress",
            payload=b"half way",
        )
    )
    ok(cli("signal", "order-9", "pause", "--payload", "maintenance"))
    ok(cli("custom-signal", "order-9", "approve", "--payload", "ok"))
    text = ok(cli("show", "order-9"))
    fields = fields_of(text)
    assert fields["instance"] == "order-9" and fields["tenant"] == "acme"
    assert fields["status"] == "running" and fields["last checkpoint"] == "charged"
    assert fields["pending signal"].startswith("pause maintenance")
    assert fields["custom signals"].startswith("approve ok")
    assert "recent events (newest first):" in text and "half way" in text
    details = json.loads(ok(cli("show", "order-9", "--json")))
    assert details["instance"]["checkpoint_id"] == "charged"
    assert base64.b64decode(details["pending_signal"]["payload"]) == b"maintenance"
    assert [e["event_type"] for e in details["recent_events"]] == ["custom", "started"]
    refused(cli("show", "ghost"), "Instance 'ghost' not found")


def test_show_prints_output_and_error(cli):
    client = cli.server.client()
    client.register("failed-one")
    client.event("failed-one", pb.EVENT_FAILED, b"disk on fire")
    fields = fields_of(ok(cli("show", "failed-one")))
    assert fields["status"] == "failed" and fields["error"] == "disk on fire"
    assert fields["finished"] != "-"


def test_retry_goes_on_with_a_failed_instance_and_show_tells_its_launch(cli):
    started = run_cli(
        "start",
        *cli.target,
        "--id",
        "job",
        "--env",
        "A=1",
        "--max-failures",
        "4",
        "--",
        "true",
        cwd=cli.folder,
    )
    ok(started)
    fields = fields_of(ok(cli("show", "job")))
    assert fields["command"] == "true" and fields["launches"] == "0"
    assert fields["failures in a row"] == "0 of 4 (without progress)"
    refused(cli("retry", "job"), "Instance 'job' is pending: only a failed or cancelled")
    client = cli.server.client()
    client.register("job", "default")
    client.checkpoint("job", "step-1", b"{}")
    client.event("job", pb.EVENT_FAILED, b"boom")
    said = ok(cli("retry", "job", "--env", "B=2", "--input", '{"x": 1}'))
    assert said == "job retried: it goes on from its checkpoint step-1\n"
    details = json.loads(ok(cli("show", "job", "--json")))
    assert details["instance"]["status"] == "pending" and details["instance"]["error"] is None
    spec = json.loads(details["launch"]["spec"])
    assert spec["env"] == {"A": "1", "B": "2"} and spec["max_failures"] == 4
    assert details["launch"]["input"] is None  # show never prints the input
    assert details["launch"]["next_launch_at"] is not None
    assert details["recent_events"][0]["event_type"] == "retried"
    refused(cli("retry", "ghost"), "Instance 'ghost' not found")
    client.register("plain", "default")
    client.event("plain", pb.EVENT_FAILED, b"boom")
    refused(cli("retry", "plain"), "was not started with `runtara-core start`")
    bad = cli("retry", "job", "--env", "NOEQUALS")
    assert bad.returncode == 2 and "is not NAME=VALUE" in bad.stderr


def test_checkpoints_lists_and_gets_states_byte_exact(cli, tmp_path):
    client = cli.server.client()
    client.register("cp-owner")
    state = bytes(range(256)) * 100
    client.checkpoint("cp-owner", "first", b"small")
    client.checkpoint("cp-owner", "second", state)
    lines = ok(cli("checkpoints", "cp-owner")).splitlines()
    assert lines[0].split() == ["CHECKPOINT", "SIZE", "CREATED"]
    assert [line.split()[0] for line in lines[1:3]] == ["second", "first"]
    assert "25.0 KiB" in lines[1] and "5 B" in lines[2]
    assert cli.stdout_bytes("checkpoints", "cp-owner", "--get", "second") == state
    ok(cli("checkpoints", "cp-owner", "--get", "second", "--output", str(tmp_path / "state.bin")))
    assert (tmp_path / "state.bin").read_bytes() == state
    refused(cli("checkpoints", "cp-owner", "--get", "nope"), "has no checkpoint 'nope'")
    refused(cli("checkpoints", "ghost"), "Instance 'ghost' not found")


def test_events_filter_by_type_subtype_time_and_text(cli):
    client = cli.server.client()
    client.register("ev")
    for subtype, payload in (("a", b'{"order": 1}'), ("b", b"\x00\xff"), ("a", b"ORDER shipped")):
        client.call(
            instance_event=pb.InstanceEvent(
                instance_id="ev", event_type=pb.EVENT_CUSTOM, subtype=subtype, payload=payload
            )
        )
    client.event("ev", pb.EVENT_HEARTBEAT)
    lines = ok(cli("events", "ev")).splitlines()
    assert lines[0].split() == ["ID", "TIME", "TYPE", "SUBTYPE", "CHECKPOINT", "PAYLOAD"]
    assert [line.split()[3] for line in lines[1:-1]] == [
        "heartbeat",
        "custom",
        "custom",
        "custom",
        "started",
    ]
    assert "<2 bytes>" in ok(cli("events", "ev", "--subtype", "b"))
    assert (
        ok(cli("events", "ev", "--type", "custom", "--contains", "order")).splitlines()[-1]
        == "events 1-2 of 2"
    )
    assert ok(cli("events", "ev", "--after", "1h")).splitlines()[-1] == "events 1-5 of 5"
    assert ok(cli("events", "ev", "--before", "2000-01-01T00:00:00Z")) == "no events\n"
    page = json.loads(ok(cli("events", "ev", "--subtype", "a", "--json")))
    assert page["total"] == 2
    assert base64.b64decode(page["items"][0]["payload"]) == b"ORDER shipped"
    bad = cli("events", "ev", "--after", "yesterday-ish")
    assert bad.returncode == 2 and "neither an ISO time" in bad.stderr


def test_health_says_what_answers(cli):
    result = cli("health")
    assert result.returncode == 0
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    assert "is healthy: runtara-core" in lines[0] or "is reachable" in lines[0]
