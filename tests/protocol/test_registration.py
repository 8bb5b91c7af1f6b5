"""RegisterInstance over QUIC."""

from __future__ import annotations

import datetime as dt

from runtara import records
from runtara.protocol import instance_pb2 as pb


def create_pending(server, instance_id, tenant="tenant"):
    now = dt.datetime.now(dt.timezone.utc)
    server.storage.run(lambda tx: tx.create_instance(instance_id, tenant, now))


def events_of(server, instance_id):
    return server.read(lambda tx: list(reversed(tx.list_events(instance_id))))


def test_registering_a_pending_instance_makes_it_running(server, client):
    create_pending(server, "a")
    reply = client.register("a")
    assert reply.success and reply.error == ""
    instance = server.instance("a")
    assert instance.status is records.InstanceStatus.RUNNING
    assert instance.started_at is not None and instance.last_activity_at is not None


def test_unknown_instance_registers_itself(server, client):
    assert client.register("new-one", "acme").success
    instance = server.instance("new-one")
    assert instance.tenant_id == "acme" and instance.status is records.InstanceStatus.RUNNING


def test_registration_records_a_started_event_first(server, client):
    client.register("a")
    first = events_of(server, "a")[0]
    assert first.event_type is records.EventType.STARTED


def test_empty_instance_id_is_refused_in_band(client):
    reply = client.call(register_instance=pb.RegisterInstanceRequest(instance_id="", tenant_id="t"))
    assert reply.WhichOneof("response") == "register_instance"
    assert not reply.register_instance.success
    assert "instance_id is required" in reply.register_instance.error


def test_empty_tenant_id_is_refused_in_band(server, client):
    reply = client.register("a", tenant_id="")
    assert not reply.success and "tenant_id is required" in reply.error
    assert server.instance("a") is None


def test_re_registering_with_an_existing_checkpoint_succeeds(server, client):
    client.register("a")
    client.checkpoint("a", "cp-1", b"state")
    reply = client.register("a", checkpoint_id="cp-1")
    assert reply.success
    assert events_of(server, "a")[-1].checkpoint_id == "cp-1"


def test_registering_with_a_missing_checkpoint_fails_and_creates_nothing(server, client):
    reply = client.register("fresh", checkpoint_id="nope")
    assert not reply.success and "not found" in reply.error
    assert server.instance("fresh") is None
    client.register("a")
    reply = client.register("a", checkpoint_id="nope")
    assert not reply.success and "Checkpoint 'nope' not found" in reply.error


def test_an_empty_checkpoint_id_is_still_checked(client):
    client.register("a")
    reply = client.register("a", checkpoint_id="")
    assert not reply.success and "not found" in reply.error


def test_another_tenant_cannot_take_over_an_instance(server, client):
    assert client.register("a", "tenant-1").success
    reply = client.register("a", "tenant-2")
    assert not reply.success and "another tenant" in reply.error
    assert server.instance("a").tenant_id == "tenant-1"


def test_finished_instances_cannot_be_registered_again(server, client):
    for status, event in (("completed", pb.EVENT_COMPLETED), ("failed", pb.EVENT_FAILED)):
        instance_id = f"done-{status}"
        client.register(instance_id)
        client.event(instance_id, event, b"x")
        reply = client.register(instance_id)
        assert not reply.success
        assert f"already {status} (terminal state)" in reply.error
        assert server.instance(instance_id).status.value == status


def test_registration_wakes_a_suspended_instance_and_clears_its_sleep(server, client):
    client.register("a")
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    server.storage.run(
        lambda tx: tx.update_instance(
            "a",
            records.InstanceUpdate(status=records.InstanceStatus.SUSPENDED, sleep_until=later),
        )
    )
    assert client.register("a").success
    instance = server.instance("a")
    assert instance.status is records.InstanceStatus.RUNNING and instance.sleep_until is None
