from __future__ import annotations

import json
import threading
import time

import pytest

from runtara import records
from runtara.sdk import Ending, Instance, Sleeping, run
from tests.support import wait_for

STATUS = records.InstanceStatus


def sleeping_until(server, instance_id="inst-1") -> float:
    stored = wait_for(lambda: (i := server.instance(instance_id)).sleep_until and i)
    return stored.sleep_until.timestamp()


def test_sleep_waits_for_the_servers_reply(server, instance):
    started = time.monotonic()
    instance.sleep(0.3)
    assert time.monotonic() - started >= 0.29
    stored = server.instance("inst-1")
    assert stored.status is STATUS.RUNNING and stored.sleep_until is None
    instance.sleep(0)


def test_bad_sleeps_are_refused_before_sending(instance):
    with pytest.raises(ValueError, match="cannot sleep -1"):
        instance.sleep(-1)
    with pytest.raises(ValueError, match="needs a key"):
        instance.sleep(10, exit=True)


def test_a_keyed_sleep_saves_its_wake_time_and_is_not_repeated(server, instance):
    started = time.time()
    instance.sleep(0.3, key="nap")
    assert time.time() - started >= 0.29
    wake_at = json.loads(instance.get_checkpoint("sleep::nap"))["wake_at_ms"] / 1000
    assert started <= wake_at <= time.time()
    instance.sleep(0.3, key="nap")  # already slept: returns without a Sleep request
    assert server.instance("inst-1").status is STATUS.RUNNING


def test_exit_and_be_woken(server, make_config):
    def workflow(instance):
        instance.sleep(60, key="nap", exit=True)
        return "not reached"

    before = time.time()
    outcome = run(workflow, make_config())
    assert (outcome.ending, outcome.exit_code) == (Ending.SLEEPING, 0)
    assert isinstance(outcome.error, Sleeping)
    assert before + 60 <= outcome.error.wake_at <= time.time() + 60
    stored = server.instance("inst-1")
    assert (stored.status, stored.checkpoint_id) == (STATUS.SUSPENDED, "sleep::nap")
    assert abs(stored.sleep_until.timestamp() - outcome.error.wake_at) < 1
    wait_for(lambda: server.server.stats()["sleeping"] == 0)  # no timer holds it
    assert server.instance("inst-1").status is STATUS.SUSPENDED


def test_a_relaunch_only_sleeps_the_remaining_time(server, make_config):
    with Instance(make_config()) as first, pytest.raises(Sleeping) as slept:
        first.register()
        first.sleep(1.0, key="nap", exit=True)  # stands for a script that died mid-sleep
    wake_at = slept.value.wake_at
    time.sleep(0.4)

    relaunched = Instance(make_config(checkpoint_id="sleep::nap"))
    relaunched.register()
    sleeper = threading.Thread(target=relaunched.sleep, args=(1.0,), kwargs={"key": "nap"})
    sleeper.start()
    # the server was asked to sleep until the saved wake time, not 1 s from now
    assert abs(sleeping_until(server) - wake_at) < 0.2
    sleeper.join()
    relaunched.close()
    assert time.time() >= wake_at - 0.01


def test_a_woken_relaunch_continues_after_the_sleep(server, make_config):
    def workflow(instance):
        instance.sleep(0.2, key="nap", exit=True)
        return "woke up"

    assert run(workflow, make_config()).ending is Ending.SLEEPING
    stored = server.instance("inst-1")
    wait_for(lambda: time.time() >= stored.sleep_until.timestamp())
    # what the wake scheduler does: relaunch with the instance's checkpoint id
    woken = run(workflow, make_config(checkpoint_id=stored.checkpoint_id))
    assert (woken.ending, woken.result) == (Ending.COMPLETED, "woke up")
    assert server.instance("inst-1").status is STATUS.COMPLETED
