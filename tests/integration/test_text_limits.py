"""Identifiers have a longest length, refused at the edge alike on every driver;
input no parser can take is a one-line error."""

from __future__ import annotations

import pytest

from runtara import limits
from runtara.protocol import instance_pb2 as pb
from tests.support import run_cli

LONG_ID = "i" * (limits.MAX_ID_BYTES + 1)
LONG_CHECKPOINT = "c" * (limits.MAX_CHECKPOINT_ID_BYTES + 1)
TOO_LONG = f"instance_id is {limits.MAX_ID_BYTES + 1} bytes long; at most 255 are allowed"


@pytest.mark.parametrize("instance_id", [LONG_ID, "é" * 128, "x" * 3000, "x" * (1 << 20)])
def test_an_instance_id_over_its_length_is_refused_and_stores_nothing(server, client, instance_id):
    reply = client.register(instance_id)
    size = len(instance_id.encode())
    assert not reply.success
    assert reply.error == f"instance_id is {size} bytes long; at most 255 are allowed"
    refused = client.checkpoint(instance_id, "cp", b"")
    assert refused.error.message == f"Validation error for 'instance_id': {reply.error}"
    assert client.register("i" * limits.MAX_ID_BYTES).success  # exactly the limit is fine
    status = client.call(get_instance_status=pb.GetInstanceStatusRequest(instance_id="x"))
    assert not status.HasField("error")  # the storage is untouched and healthy


def test_other_identifiers_have_their_lengths(client, running):
    checkpoint = client.checkpoint(running, LONG_CHECKPOINT, b"s")
    assert checkpoint.error.message == (
        "Validation error for 'checkpoint_id': checkpoint_id is 1025 bytes long; "
        "at most 1024 are allowed"
    )
    assert not client.checkpoint(running, LONG_CHECKPOINT[:-1], b"s").HasField("error")
    tenant = client.register("other", "t" * 256)
    assert tenant.error == "tenant_id is 256 bytes long; at most 255 are allowed"
    event = client.call(
        instance_event=pb.InstanceEvent(
            instance_id=running, event_type=pb.EVENT_CUSTOM, subtype="s" * 256
        )
    )
    assert event.error.message == (
        "Validation error for 'subtype': subtype is 256 bytes long; at most 255 are allowed"
    )


def test_the_tools_refuse_long_ids_and_deep_input(database_url, tmp_path):
    target = ("--database-url", database_url)
    run_cli("migrate", *target, cwd=tmp_path)
    long_id = run_cli("start", *target, "--id", LONG_ID, "--", "true", cwd=tmp_path)
    assert long_id.returncode == 1
    assert long_id.stderr == f"runtara-core: error: {TOO_LONG}\n"
    deep = "[" * 50_000 + "]" * 50_000
    nested = run_cli("start", *target, "--input", deep, "--", "true", cwd=tmp_path)
    assert nested.returncode == 2 and len(nested.stderr.splitlines()) == 1
    assert "--input nests too deeply" in nested.stderr
    signal = run_cli("custom-signal", LONG_ID, "approve", *target, cwd=tmp_path)
    assert signal.returncode == 1 and TOO_LONG in signal.stderr
