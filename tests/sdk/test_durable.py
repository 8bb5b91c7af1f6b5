from __future__ import annotations

import asyncio
import time

import pytest

from runtara.sdk import AsyncInstance, Cancelled, Instance, InvalidState, NoInstance, durable


def stored(server, checkpoint_id, instance_id="inst-1"):
    checkpoint = server.read(lambda tx: tx.get_checkpoint(instance_id, checkpoint_id))
    return None if checkpoint is None else checkpoint.state


def test_a_finished_step_is_not_run_again_by_a_fresh_sdk_instance(server, make_config):
    calls = []

    @durable
    def fetch(order_id, copies=1):
        calls.append(order_id)
        return {"order": order_id, "lines": (1, 2)}

    with Instance(make_config()) as first:
        first.register()
        assert fetch("o-1") == {"order": "o-1", "lines": [1, 2]}  # always the JSON round trip
    with Instance(make_config()) as relaunched:  # the script crashed and runs again
        relaunched.register()
        assert fetch("o-1") == {"order": "o-1", "lines": [1, 2]}
        assert fetch(order_id="o-2") == {"order": "o-2", "lines": [1, 2]}
    assert calls == ["o-1", "o-2"]
    assert stored(server, "durable::fetch::o-1") == b'{"order": "o-1", "lines": [1, 2]}'


def test_retries_back_off_and_are_recorded(server, instance):
    started = []

    @durable(max_retries=3, delay_ms=20)
    def flaky(key):
        started.append(time.monotonic())
        if len(started) < 3:
            raise ConnectionError(f"attempt {len(started)} failed")
        return "ok"

    assert flaky("k") == "ok"
    assert started[1] - started[0] >= 0.02 and started[2] - started[1] >= 0.04
    assert stored(server, "durable::flaky::k::retry::2") == b"attempt 1 failed"
    assert stored(server, "durable::flaky::k::retry::3") == b"attempt 2 failed"
    assert stored(server, "durable::flaky::k::retry::4") is None
    assert stored(server, "durable::flaky::k") == b'"ok"'


def test_errors_are_raised_after_the_last_attempt_and_never_cached(server, instance):
    runs = []

    @durable(max_retries=1, delay_ms=1)
    def broken(key):
        runs.append(key)
        raise ValueError(f"bad {key}")

    with pytest.raises(ValueError, match="bad k"):
        broken("k")
    assert runs == ["k", "k"]
    assert stored(server, "durable::broken::k") is None
    with pytest.raises(ValueError):
        broken("k")
    assert len(runs) == 4


def test_no_retries_means_one_attempt(server, instance):
    @durable(max_retries=0)
    def once(key):
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        once("k")
    assert stored(server, "durable::once::k::retry::2") is None


def test_a_stop_is_never_retried(server, instance):
    runs = []

    @durable(max_retries=3, delay_ms=1)
    def stopped(key):
        runs.append(key)
        raise Cancelled(b"")

    with pytest.raises(Cancelled):
        stopped("k")
    assert runs == ["k"]


def test_a_value_stored_by_a_racing_run_wins(server, instance):
    @durable
    def racy(key):
        instance.checkpoint("durable::racy::k", b'"stored first"')
        return "computed second"

    assert racy("k") == "stored first"


def test_results_must_be_json(server, instance):
    @durable
    def unserializable(key):
        return {1, 2}

    with pytest.raises(TypeError, match="durable::unserializable::k.*JSON"):
        unserializable("k")
    assert stored(server, "durable::unserializable::k") is None
    instance.checkpoint("durable::garbled::k", b"\xff not json")

    @durable
    def garbled(key):
        return 1

    with pytest.raises(InvalidState, match="durable::garbled::k"):
        garbled("k")


def test_a_durable_function_needs_a_registered_instance_of_its_kind(make_config):
    @durable
    def step(key):
        return key

    with pytest.raises(NoInstance, match="register one first"):
        step("k")

    async def in_async_code():
        async with AsyncInstance(make_config()) as instance:
            await instance.register()
            step("k")

    with pytest.raises(NoInstance, match="needs a registered Instance.*AsyncInstance"):
        asyncio.run(in_async_code())
    with pytest.raises(TypeError, match="first parameter"):
        durable(lambda: None)


def test_async_durable_functions(server, make_config):
    runs = []

    @durable(max_retries=2, delay_ms=1)
    async def fetch(key):
        runs.append(key)
        await asyncio.sleep(0)
        if len(runs) == 1:
            raise TimeoutError("slow upstream")
        return [key]

    async def script():
        async with AsyncInstance(make_config()) as instance:
            await instance.register()
            return await fetch("a"), await fetch("a")

    assert asyncio.run(script()) == (["a"], ["a"])
    assert runs == ["a", "a"]
    assert stored(server, "durable::fetch::a::retry::2") == b"slow upstream"
