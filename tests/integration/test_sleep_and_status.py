"""Durable Sleep over QUIC: the loop's real timers and connections that go away.

The rules of Sleep and GetInstanceStatus are tested on the core
(tests/protocol/test_sleep_and_status.py); these tests show the QUIC runtime
carries them out, on SQLite.
"""

from __future__ import annotations

import threading
import time

import pytest

from runtara import records
from runtara.protocol import instance_pb2 as pb
from tests.support import sqlite_url, wait_for


@pytest.fixture
def database_url(tmp_path):
    return sqlite_url(tmp_path)


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


def test_sleeps_do_not_hold_workers(tmp_path):
    from tests.support import LoopbackServer, sqlite_url

    with LoopbackServer(sqlite_url(tmp_path), max_concurrent=2) as server:
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
