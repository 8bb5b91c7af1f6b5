from __future__ import annotations

import asyncio
import json
import re
import time

import pytest

from runtara.sdk import (
    AsyncInstance,
    Cancelled,
    Ending,
    Instance,
    InvalidState,
    NoInstance,
    StepKeyConflict,
    durable,
    run,
    step_state,
)


def stored(server, checkpoint_id, instance_id="inst-1"):
    checkpoint = server.read(lambda tx: tx.get_checkpoint(instance_id, checkpoint_id))
    return None if checkpoint is None else checkpoint.state


def stored_envelope(server, checkpoint_id, instance_id="inst-1"):
    return json.loads(stored(server, checkpoint_id, instance_id))


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
        assert fetch("o-1", copies=1) == {"order": "o-1", "lines": [1, 2]}  # defaults count
        assert fetch(order_id="o-2") == {"order": "o-2", "lines": [1, 2]}
    assert calls == ["o-1", "o-2"]


def test_the_state_names_the_call_and_a_digest_of_its_arguments(server, instance):
    @durable
    def add(a, b):
        return a + b

    assert add(1, 2) == 3
    envelope = stored_envelope(server, "durable::add::1")
    assert envelope.keys() == {"durable", "args", "call", "result"}
    assert (envelope["durable"], envelope["call"], envelope["result"]) == (1, "add(1, 2)", 3)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", envelope["args"])


def test_the_same_key_with_other_arguments_is_refused_naming_both_calls(server, instance):
    runs = []

    @durable
    def add(a, b):
        runs.append((a, b))
        return a + b

    assert add(1, 2) == 3
    assert add(1, b=2) == 3  # the same arguments, bound
    with pytest.raises(StepKeyConflict) as raised:
        add(1, 5)
    message = str(raised.value)
    assert "durable step add" in message and "'durable::add::1'" in message
    assert "add(1, 2)" in message and "add(1, 5)" in message
    assert '@durable(key=lambda a, b: f"{a}:{b}")' in message
    conflict = raised.value
    assert (conflict.step, conflict.key) == ("add", "durable::add::1")
    assert (conflict.stored_call, conflict.call) == ("add(1, 2)", "add(1, 5)")
    assert isinstance(conflict, ValueError)
    assert runs == [(1, 2)]
    assert stored_envelope(server, "durable::add::1")["result"] == 3


def test_a_relaunch_calling_with_other_arguments_is_refused(server, make_config):
    @durable
    def charge(order, amount):
        return {"order": order, "amount": amount}

    with Instance(make_config()) as first:
        first.register()
        charge("o-1", 10)
    with Instance(make_config()) as relaunched:
        relaunched.register()
        assert charge("o-1", 10) == {"order": "o-1", "amount": 10}
        with pytest.raises(StepKeyConflict, match=r"charge\('o-1', 10\).*charge\('o-1', 20\)"):
            charge("o-1", 20)


def test_under_the_runner_a_conflict_fails_the_workflow(server, make_config):
    @durable
    def add(a, b):
        return a + b

    outcome = run(lambda instance: [add(1, 2), add(1, 5)], make_config())
    assert (outcome.ending, outcome.exit_code) == (Ending.FAILED, 1)
    error = server.instance("inst-1").error
    assert error.startswith("StepKeyConflict: durable step add") and "add(1, 5)" in error


def test_a_conflict_is_never_retried(server, instance):
    runs = []

    @durable(max_retries=3, delay_ms=1)
    def inner(order, amount):
        return amount

    @durable(max_retries=3, delay_ms=1)
    def outer(order):
        runs.append(order)
        return inner(order, 2)  # the workflow's bug: inner("o", 1) owns this key

    inner("o", 1)
    with pytest.raises(StepKeyConflict, match=r"inner\('o', 1\).*inner\('o', 2\)"):
        inner("o", 2)
    with pytest.raises(StepKeyConflict):
        outer("o")
    assert runs == ["o"]
    assert stored(server, "durable::inner::o::retry::2") is None
    assert stored(server, "durable::outer::o::retry::2") is None
    assert stored(server, "durable::outer::o") is None


def test_a_result_stored_first_by_another_call_is_checked_too(server, instance):
    @durable
    def racy(key, amount):
        if amount == 2:
            racy(key, 1)  # as another run would: its result is stored first
        return amount

    with pytest.raises(StepKeyConflict, match=r"racy\('k', 1\).*racy\('k', 2\)"):
        racy("k", 2)
    assert stored_envelope(server, "durable::racy::k")["result"] == 1

    runs = []

    @durable
    def same(key):
        runs.append(key)
        if len(runs) == 1:
            same(key)  # the same call, stored first
            return "computed second"
        return "stored first"

    assert same("k") == "stored first"


def test_a_step_without_parameters_has_one_key(server, instance):
    runs = []

    @durable
    def prepare():
        runs.append(1)
        return {"ready": True}

    assert prepare() == {"ready": True}
    assert prepare() == {"ready": True}
    assert runs == [1]
    assert stored_envelope(server, "durable::prepare")["call"] == "prepare()"


def test_an_explicit_key_tells_calls_apart(server, instance):
    runs = []

    @durable(key=lambda order, amount: f"{order}:{amount}", max_retries=0)
    def charge(order, amount):
        runs.append(amount)
        return amount * 2

    assert charge("o", 1) == 2
    assert charge("o", 2) == 4
    assert charge(order="o", amount=2) == 4
    assert runs == [1, 2]
    assert stored_envelope(server, "durable::charge::o:1")["result"] == 2
    assert stored_envelope(server, "durable::charge::o:2")["result"] == 4


def test_a_key_that_is_not_a_non_empty_str_is_refused(server, instance):
    @durable(key=lambda order: len(order))
    def counted(order):
        return order

    @durable(key=lambda order: "")
    def blank(order):
        return order

    with pytest.raises(TypeError, match="key function of durable function counted returned int"):
        counted("o")
    with pytest.raises(
        ValueError, match="key function of durable function blank returned an empty"
    ):
        blank("o")
    with pytest.raises(TypeError, match="key must be a function"):
        durable(key="o")
    assert stored(server, "durable::counted::o") is None
    assert stored(server, "durable::blank::o") is None


def test_a_state_written_by_the_older_sdk_is_still_returned(server, instance):
    runs = []

    @durable
    def legacy(key, amount):
        runs.append(key)
        return amount

    instance.checkpoint("durable::legacy::k", b'{"total": 3}')
    assert legacy("k", 99) == {"total": 3}  # no arguments stored, so none compared
    instance.checkpoint(
        "durable::legacy::j", b'{"durable": true, "args": "", "call": "", "result": 1}'
    )
    assert legacy("j", 1) == {"durable": True, "args": "", "call": "", "result": 1}
    assert runs == []


class Client:
    """An argument JSON cannot encode, such as a connection to another service."""

    def __init__(self, url):
        self.url = url


def test_arguments_json_cannot_encode_do_not_break_resumption(server, make_config):
    runs = []

    @durable
    def fetch(order, client, options, tags=frozenset()):
        runs.append(order)
        return order

    def arguments():
        cyclic = []
        cyclic.append(cyclic)
        options = {"client": Client("https://a"), "odd keys": {(1, 2): 3}, "cycle": cyclic}
        return Client("https://a"), options, {"x", "y"}

    for _ in range(2):  # a run and a relaunch: new objects, at other addresses
        with Instance(make_config()) as sdk_instance:
            sdk_instance.register()
            client, options, tags = arguments()
            assert fetch("o-1", client, options, tags=tags) == "o-1"
    assert runs == ["o-1"]
    assert "Client object" in stored_envelope(server, "durable::fetch::o-1")["call"]


def test_the_digest_is_canonical_and_the_description_short():
    assert step_state.digest({"a": {"x": 1, "y": 2}}) == step_state.digest({"a": {"y": 2, "x": 1}})
    assert step_state.digest({"a": 1}) != step_state.digest({"a": 1.0})
    assert step_state.digest({"a": [1]}) != step_state.digest({"b": [1]})
    assert step_state.digest({"a": Client("1")}) == step_state.digest({"a": Client("2")})
    assert step_state.digest({"a": Client("1")}) != step_state.digest({"a": object()})
    described = step_state.describe("step", ("x" * 10_000, list(range(1000))), {"k": "v" * 500})
    assert len(described) <= step_state.CALL_LIMIT and described.startswith("step('xxx")
    assert step_state.describe("step", (1,), {"k": "v"}) == "step(1, k='v')"


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
    assert stored_envelope(server, "durable::flaky::k")["result"] == "ok"


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


def test_async_steps_check_their_arguments_and_take_explicit_keys(server, make_config):
    @durable(max_retries=2, delay_ms=1)
    async def add(a, b):
        return a + b

    @durable(key=lambda a, b: f"{a}+{b}")
    async def keyed(a, b):
        return a + b

    @durable
    async def ready():
        return True

    async def script():
        async with AsyncInstance(make_config()) as instance:
            await instance.register()
            assert await add(1, 2) == 3
            with pytest.raises(StepKeyConflict, match=r"add\(1, 2\).*add\(1, 5\)"):
                await add(1, 5)
            assert [await keyed(1, 2), await keyed(1, 5), await ready()] == [3, 6, True]

    asyncio.run(script())
    assert stored(server, "durable::add::1::retry::2") is None
    assert stored_envelope(server, "durable::keyed::1+5")["result"] == 6
    assert stored_envelope(server, "durable::ready")["result"] is True
