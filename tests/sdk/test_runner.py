from __future__ import annotations

import asyncio

import pytest

from runtara import records
from runtara.sdk import Cancelled, Ending, Paused, SignalType, durable, main, run
from tests.sdk.conftest import send_signal

STATUS = records.InstanceStatus


def test_a_returned_value_is_reported_completed_as_json(server, make_config):
    outcome = run(lambda instance: {"answer": 42}, make_config())
    assert (outcome.ending, outcome.result) == (Ending.COMPLETED, {"answer": 42})
    assert outcome.exit_code == 0
    stored = server.instance("inst-1")
    assert (stored.status, stored.output) == (STATUS.COMPLETED, b'{"answer": 42}')


def test_an_exception_is_reported_failed_with_its_text(server, make_config):
    def workflow(instance):
        instance.checkpoint("step-1", b"")
        raise ValueError("the order does not exist")

    outcome = run(workflow, make_config())
    assert (outcome.ending, outcome.exit_code) == (Ending.FAILED, 1)
    assert isinstance(outcome.error, ValueError)
    stored = server.instance("inst-1")
    assert (stored.status, stored.error) == (STATUS.FAILED, "ValueError: the order does not exist")


def test_a_result_json_cannot_encode_is_a_failure(server, make_config):
    outcome = run(lambda instance: object(), make_config())
    assert outcome.ending is Ending.FAILED
    assert server.instance("inst-1").error.startswith("TypeError: Object of type object")


def test_a_cancel_stops_the_workflow_at_its_next_checkpoint(server, make_config):
    reached = []

    def workflow(instance):
        instance.checkpoint("step-1", b"")
        send_signal(server, "inst-1", SignalType.CANCEL, b"customer withdrew")
        try:
            instance.checkpoint("step-2", b"")
        except Exception:  # a workflow's own error handling does not swallow the stop
            reached.append("except Exception")
        reached.append("after step-2")

    outcome = run(workflow, make_config())
    assert (outcome.ending, outcome.exit_code) == (Ending.CANCELLED, 0)
    assert isinstance(outcome.error, Cancelled) and outcome.error.payload == b"customer withdrew"
    assert reached == []
    stored = server.instance("inst-1")
    assert stored.status is STATUS.CANCELLED and stored.finished_at is not None
    assert server.read(lambda tx: tx.get_pending_signal("inst-1")) is None  # acknowledged


def test_a_cancel_is_also_seen_by_signal_polls(server, make_config):
    def workflow(instance):
        send_signal(server, "inst-1", SignalType.CANCEL)
        instance.poll_signals()
        return "not reached"

    assert run(workflow, make_config()).ending is Ending.CANCELLED
    assert server.instance("inst-1").status is STATUS.CANCELLED


def test_a_pause_suspends_the_instance_and_a_relaunch_resumes_it(server, make_config):
    runs = []

    @durable
    def step(key):
        runs.append(key)
        return key.upper()

    def workflow(instance):
        first = step("a")
        if not runs[1:]:
            send_signal(server, "inst-1", SignalType.PAUSE, b"maintenance")
        second = step("b")  # its checkpoint sees the pause, after saving b's result
        return [first, second, step("c")]

    outcome = run(workflow, make_config())
    assert (outcome.ending, outcome.exit_code) == (Ending.PAUSED, 0)
    assert isinstance(outcome.error, Paused)
    stored = server.instance("inst-1")
    assert (stored.status, stored.checkpoint_id) == (STATUS.SUSPENDED, "durable::step::b")
    assert server.read(lambda tx: tx.get_pending_signal("inst-1")) is None  # acknowledged

    resumed = run(workflow, make_config(checkpoint_id=stored.checkpoint_id))
    assert (resumed.ending, resumed.result) == (Ending.COMPLETED, ["A", "B", "C"])
    assert runs == ["a", "b", "c"]


def test_a_resume_signal_is_acknowledged_and_ignored(server, make_config):
    def workflow(instance):
        send_signal(server, "inst-1", SignalType.RESUME)
        return instance.checkpoint("step", b"").pending_signal.type.value

    assert run(workflow, make_config()).result == "resume"
    assert server.read(lambda tx: tx.get_pending_signal("inst-1")) is None


def test_async_workflows_run_the_same_way(server, make_config):
    async def workflow(instance):
        await instance.checkpoint("step-1", b"")
        await asyncio.sleep(0)
        send_signal(server, "inst-1", SignalType.PAUSE)
        await instance.checkpoint("step-2", b"")

    assert run(workflow, make_config()).ending is Ending.PAUSED
    assert server.instance("inst-1").status is STATUS.SUSPENDED


def test_main_exits_with_the_outcomes_code(server, make_config):
    with pytest.raises(SystemExit) as exited:
        main(lambda instance: 1 / 0, make_config())
    assert exited.value.code == 1
    assert server.instance("inst-1").error == "ZeroDivisionError: division by zero"
