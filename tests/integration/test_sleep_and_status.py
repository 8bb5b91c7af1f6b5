"""Durable Sleep and GetInstanceStatus over QUIC."""

from __future__ import annotations

import threading
import time

from runtara import records
from runtara.protocol import instance_pb2 as pb
from tests.support import wait_for


def sleep_request(instance_id, duration_ms, checkpoint_id="", state=b""):
    return pb.SleepRequest(
        instance_id=instance_id, duration_ms=duration_ms, checkpoint_id=checkpoint_id, state=state
    )


def test_sleep_replies_after_the_duration_and_leaves_the_instance_running(server, client, running):
    for duration in (100, 500):
        started = time.monotonic()
        reply = client.call(sleep=sleep_request(running, duration))
        assert time.monotonic() - started >= duration / 1000 * 0.9
        assert reply.WhichOneof("response") == "sleep"
        instance = server.instance(running)
        assert instance.status is records.InstanceStatus.RUNNING and instance.sleep_until is None


def test_sequential_sleeps_add_up(client, running):
    started = time.monotonic()
    client.call(sleep=sleep_request(running, 100))
    client.call(sleep=sleep_request(running, 100))
    assert time.monotonic() - started >= 0.18


def test_during_the_sleep_the_instance_is_suspended_with_a_wake_time(server, client, running):
    thread = threading.Thread(target=client.call, kwargs={"sleep": sleep_request(running, 1500)})
    thread.start()
    sleeping = wait_for(lambda: (i := server.instance(running)).sleep_until and i)
    assert sleeping.status is records.InstanceStatus.SUSPENDED
    assert sleeping.sleep_until > sleeping.last_activity_at
    thread.join()
    assert server.instance(running).status is records.InstanceStatus.RUNNING
    assert not client.checkpoint(running, "after-sleep", b"").HasField("error")


def test_sleep_saves_the_given_checkpoint_first(server, client, running):
    client.call(sleep=sleep_request(running, 10, "before-sleep", b"saved state"))
    assert client.get_checkpoint(running, "before-sleep").get_checkpoint.state == b"saved state"
    assert server.instance(running).checkpoint_id == "before-sleep"


def test_sleeps_do_not_hold_workers(tmp_path):
    from tests.support import LoopbackServer, sqlite_url

    server = LoopbackServer(sqlite_url(tmp_path), max_concurrent=2)
    try:
        sleepers = [server.client() for _ in range(6)]
        for index, sleeper in enumerate(sleepers):
            assert sleeper.register(f"sleeper-{index}").success
        threads = [
            threading.Thread(
                target=sleeper.call, kwargs={"sleep": sleep_request(f"sleeper-{i}", 2000)}
            )
            for i, sleeper in enumerate(sleepers)
        ]
        for thread in threads:
            thread.start()
        wait_for(lambda: server.server.stats()["sleeping"] == 6)
        other = server.client()
        started = time.monotonic()
        assert other.register("busy").success
        assert not other.checkpoint("busy", "cp", b"x").HasField("error")
        assert time.monotonic() - started < 1.5  # answered while six sleeps are pending
        for thread in threads:
            thread.join()
    finally:
        server.stop()


def test_an_instance_that_vanishes_during_its_sleep_stays_due(server, running):
    sleeper = server.client()
    assert sleeper.register("napper").success
    sleeper.fire(sleep=sleep_request("napper", 300))
    wait_for(lambda: server.instance("napper").sleep_until)
    sleeper.close()
    time.sleep(0.6)
    instance = server.instance("napper")
    assert instance.status is records.InstanceStatus.SUSPENDED
    assert instance.sleep_until is not None


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
