"""Durable Sleep and GetInstanceStatus, on the core's virtual time."""

from __future__ import annotations

import attrs

from runtara import records
from runtara.protocol import framing
from runtara.protocol import instance_pb2 as pb
from tests.protocol.harness import LIMITS, CoreServer


def sleep_request(instance_id, duration_ms, checkpoint_id="", state=b""):
    return pb.SleepRequest(
        instance_id=instance_id, duration_ms=duration_ms, checkpoint_id=checkpoint_id, state=state
    )


def sleep_frame(instance_id, duration_ms):
    request = pb.RpcRequest(sleep=sleep_request(instance_id, duration_ms))
    return framing.encode_frame(request.SerializeToString(), framing.MessageType.REQUEST)


def test_sleep_replies_after_the_duration_and_leaves_the_instance_running(server, client, running):
    for duration in (100, 500):
        started = server.loop_time
        reply = client.call(sleep=sleep_request(running, duration))
        assert server.loop_time - started == duration / 1000
        assert reply.WhichOneof("response") == "sleep"
        instance = server.instance(running)
        assert instance.status is records.InstanceStatus.RUNNING and instance.sleep_until is None


def test_sequential_sleeps_add_up(server, client, running):
    client.call(sleep=sleep_request(running, 100))
    client.call(sleep=sleep_request(running, 100))
    assert server.loop_time == 0.2


def test_during_the_sleep_the_instance_is_suspended_with_a_wake_time(server, client, running):
    stream_id = client.send(sleep_frame(running, 1500))
    sleeping = server.instance(running)
    assert sleeping.status is records.InstanceStatus.SUSPENDED
    assert sleeping.sleep_until > sleeping.last_activity_at
    server.advance(1.4)
    assert not server.answered(client, stream_id).finished
    server.advance(0.1)
    assert server.answered(client, stream_id).finished
    assert server.instance(running).status is records.InstanceStatus.RUNNING
    assert not client.checkpoint(running, "after-sleep", b"").HasField("error")


def test_sleep_saves_the_given_checkpoint_first(server, client, running):
    client.call(sleep=sleep_request(running, 10, "before-sleep", b"saved state"))
    assert client.get_checkpoint(running, "before-sleep").get_checkpoint.state == b"saved state"
    assert server.instance(running).checkpoint_id == "before-sleep"


def test_sleeps_do_not_hold_workers():
    server = CoreServer(attrs.evolve(LIMITS, workers=2, max_pending=0))
    sleepers = [server.client() for _ in range(6)]
    for index, sleeper in enumerate(sleepers):
        assert sleeper.register(f"sleeper-{index}").success
        sleeper.send(sleep_frame(f"sleeper-{index}", 2000))
    figures = server.stats()
    assert figures["sleeping"] == 6 and figures["running"] == 0
    other = server.client()
    assert other.register("busy").success
    assert not other.checkpoint("busy", "cp", b"x").HasField("error")
    assert server.loop_time == 0  # answered while six sleeps are pending


def test_an_instance_that_vanishes_during_its_sleep_stays_due(server, running):
    sleeper = server.client()
    assert sleeper.register("napper").success
    sleeper.fire(sleep=sleep_request("napper", 300))
    assert server.instance("napper").sleep_until is not None
    sleeper.close()
    assert not server.timers
    server.advance(0.6)
    instance = server.instance("napper")
    assert instance.status is records.InstanceStatus.SUSPENDED
    assert instance.sleep_until is not None


def test_a_sleep_whose_stream_was_abandoned_leaves_the_instance_due(server, client, running):
    client.fire(sleep=sleep_request(running, 300))
    server.advance(0.6)
    assert server.instance(running).status is records.InstanceStatus.SUSPENDED


def test_sleeps_in_progress_at_shutdown_stay_due(server, client, running):
    client.send(sleep_frame(running, 300))
    server.perform(server.core.stop_accepting())
    assert not server.timers
    server.advance(0.6)
    assert server.instance(running).status is records.InstanceStatus.SUSPENDED


def test_sleep_longer_than_ten_years_is_refused(client, running):
    reply = client.call(sleep=sleep_request(running, 3651 * 24 * 3600 * 1000))
    assert reply.error.code == "SLEEP_ERROR" and "3650 days" in reply.error.message


def test_sleep_of_an_unknown_or_finished_instance_is_an_error(client, running):
    assert client.call(sleep=sleep_request("ghost", 10)).error.code == "SLEEP_ERROR"
    client.event(running, pb.EVENT_COMPLETED)
    reply = client.call(sleep=sleep_request(running, 10))
    assert reply.error.code == "SLEEP_ERROR" and "invalid state" in reply.error.message


def test_status_of_an_unknown_instance_is_unknown_not_an_error(client):
    reply = client.status("ghost")
    assert reply.instance_id == "ghost" and reply.status == pb.STATUS_UNKNOWN
    assert reply.error == "Instance not found" and reply.started_at_ms == 0
    assert not reply.HasField("checkpoint_id") and not reply.HasField("output")


def test_status_of_a_running_instance(client, running):
    reply = client.status(running)
    assert reply.status == pb.STATUS_RUNNING and reply.started_at_ms > 0
    assert not reply.HasField("finished_at_ms") and not reply.HasField("error")
    assert not reply.HasField("checkpoint_id")
