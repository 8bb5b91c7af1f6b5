"""InstanceEvent and InstanceEventBatch."""

from __future__ import annotations

import json

import pytest

from runtara import records
from runtara.protocol import instance_pb2 as pb
from runtara.records import EventFilter


def events_of(server, instance_id, **filters):
    return server.read(
        lambda tx: list(reversed(tx.list_events(instance_id, EventFilter(**filters))))
    )


def custom(instance_id, subtype, payload):
    return pb.InstanceEvent(
        instance_id=instance_id, event_type=pb.EVENT_CUSTOM, subtype=subtype, payload=payload
    )


def test_fire_and_forget_custom_events_are_stored_byte_exact_in_order(server, client, running):
    body = json.dumps({"step": 3, "name": "ünïcode"}).encode()
    client.fire(instance_event=custom(running, "progress", b"first"))
    client.fire(instance_event=custom(running, "audit", body))
    stored = events_of(server, running, event_type=records.EventType.CUSTOM)
    assert [(e.subtype, e.payload) for e in stored] == [("progress", b"first"), ("audit", body)]
    assert json.loads(stored[1].payload) == {"step": 3, "name": "ünïcode"}
    assert server.instance(running).status is records.InstanceStatus.RUNNING


def test_subtype_counts(server, client, running):
    for index in range(5):
        client.call(instance_event=custom(running, "a" if index % 2 == 0 else "b", b""))
    assert len(events_of(server, running, subtype="a")) == 3
    assert len(events_of(server, running, subtype="b")) == 2


@pytest.mark.parametrize(
    ("event_type", "stored"),
    [
        (0, "heartbeat"),
        (1, "heartbeat"),
        (99, "heartbeat"),
        (2, "completed"),
        (3, "failed"),
        (4, "suspended"),
        (5, "custom"),
    ],
)
def test_event_types_are_mapped_unknown_numbers_as_heartbeat(
    server, client, running, event_type, stored
):
    reply = client.event(running, event_type)
    assert reply.instance_event.success and not reply.instance_event.HasField("error")
    assert events_of(server, running)[-1].event_type.value == stored


def test_completed_sets_output_and_finish_time(server, client, running):
    client.event(running, pb.EVENT_COMPLETED, b'{"ok":true}')
    instance = server.instance(running)
    assert instance.status is records.InstanceStatus.COMPLETED
    assert instance.output == b'{"ok":true}' and instance.finished_at is not None
    status = client.status(running)
    assert status.status == pb.STATUS_COMPLETED and status.output == b'{"ok":true}'
    assert status.HasField("finished_at_ms")


@pytest.mark.parametrize(
    ("payload", "error"),
    [(b"boom", "boom"), (b"", "Unknown error"), (b"\xff\xfe", "Unknown error (binary payload)")],
)
def test_failed_stores_the_error_text(server, client, running, payload, error):
    client.event(running, pb.EVENT_FAILED, payload)
    instance = server.instance(running)
    assert instance.status is records.InstanceStatus.FAILED and instance.error == error
    assert instance.output is None


def test_suspended_event(server, client, running):
    client.event(running, pb.EVENT_SUSPENDED)
    assert server.instance(running).status is records.InstanceStatus.SUSPENDED


def test_exact_repeat_of_the_final_event_is_accepted_and_changes_nothing(server, client, running):
    client.event(running, pb.EVENT_COMPLETED, b"result")
    before = server.instance(running)
    count = len(events_of(server, running))
    reply = client.event(running, pb.EVENT_COMPLETED, b"result")
    assert reply.instance_event.success
    after = server.instance(running)
    assert after.finished_at == before.finished_at and after.output == b"result"
    assert len(events_of(server, running)) == count


@pytest.mark.parametrize(
    ("event_type", "payload"),
    [(pb.EVENT_COMPLETED, b"other"), (pb.EVENT_FAILED, b"x"), (pb.EVENT_SUSPENDED, b"")],
)
def test_other_status_changes_of_a_finished_instance_are_refused(
    server, client, running, event_type, payload
):
    client.event(running, pb.EVENT_COMPLETED, b"result")
    count = len(events_of(server, running))
    reply = client.event(running, event_type, payload)
    assert reply.error.code == "INSTANCE_EVENT_ERROR"
    assert reply.error.message == f"Instance '{running}' is already completed (terminal state)"
    instance = server.instance(running)
    assert instance.status is records.InstanceStatus.COMPLETED and instance.output == b"result"
    assert len(events_of(server, running)) == count


def test_heartbeat_and_custom_events_are_still_recorded_after_the_end(server, client, running):
    client.event(running, pb.EVENT_FAILED, b"broke")
    assert client.event(running, pb.EVENT_HEARTBEAT).instance_event.success
    assert client.call(instance_event=custom(running, "post-mortem", b"x")).instance_event.success
    kinds = [e.event_type for e in events_of(server, running)]
    assert kinds[-2:] == [records.EventType.HEARTBEAT, records.EventType.CUSTOM]
    assert server.instance(running).status is records.InstanceStatus.FAILED


def test_event_times_are_the_servers(server, client, running):
    before = server.clock.current
    client.event(running, pb.EVENT_HEARTBEAT, timestamp_ms=0)
    client.event(running, pb.EVENT_HEARTBEAT, timestamp_ms=4_102_444_800_000)  # year 2100
    for event in events_of(server, running)[-2:]:
        assert before < event.created_at <= server.clock.current


def test_event_for_unknown_or_empty_instance_is_an_error(client):
    reply = client.event("ghost", pb.EVENT_HEARTBEAT)
    assert reply.error.code == "INSTANCE_EVENT_ERROR" and "not found" in reply.error.message
    reply = client.event("", pb.EVENT_HEARTBEAT)
    assert reply.error.message == "Validation error for 'instance_id': instance_id is required"


def test_batch_applies_each_event_skips_bad_ones_and_ends_with_no_reply(server, client, running):
    client.no_reply(
        instance_event_batch=pb.InstanceEventBatch(
            events=[
                custom(running, "one", b"1"),
                custom("ghost", "lost", b""),
                pb.InstanceEvent(
                    instance_id=running, event_type=pb.EVENT_COMPLETED, payload=b"done"
                ),
            ]
        )
    )
    assert [e.subtype for e in events_of(server, running, event_type=records.EventType.CUSTOM)] == [
        "one"
    ]
    assert server.instance(running).status is records.InstanceStatus.COMPLETED


def test_every_request_updates_last_activity(server, client, running):
    def touched_by(call):
        before = server.instance(running).last_activity_at
        call()
        return server.instance(running).last_activity_at > before

    assert touched_by(lambda: client.checkpoint(running, "cp", b""))
    assert touched_by(lambda: client.get_checkpoint(running, "cp"))
    assert touched_by(lambda: client.status(running))
    assert touched_by(lambda: client.poll(running))
    assert touched_by(lambda: client.ack(running, pb.SIGNAL_PAUSE, acknowledged=False))
    assert touched_by(lambda: client.event(running, pb.EVENT_HEARTBEAT))
    assert touched_by(
        lambda: client.no_reply(
            retry_attempt=pb.RetryAttemptEvent(
                instance_id=running, checkpoint_id="c", attempt_number=2
            )
        )
    )
