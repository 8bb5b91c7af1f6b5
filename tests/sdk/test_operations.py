from __future__ import annotations

import asyncio
import time

import pytest

from runtara import records
from runtara.sdk import (
    AsyncInstance,
    ClientError,
    CustomSignal,
    Instance,
    RegistrationRefused,
    ServerError,
    Signal,
    SignalType,
)
from tests.sdk.conftest import events, send_custom_signal, send_signal

RUNNING = records.InstanceStatus.RUNNING


def test_register_makes_the_instance_running(server, instance):
    stored = server.instance("inst-1")
    assert (stored.status, stored.tenant_id) == (RUNNING, "tenant")
    assert instance.status().status is RUNNING


def test_register_names_the_configured_checkpoint_on_relaunch(server, instance, make_config):
    instance.checkpoint("step-1", b"state")
    instance.suspended()
    with Instance(make_config(checkpoint_id="step-1")) as relaunched:
        relaunched.register()
    started = events(server, "inst-1", records.EventType.STARTED)
    assert [event.checkpoint_id for event in started] == [None, "step-1"]
    assert server.instance("inst-1").status is RUNNING


def test_refused_registrations_say_why(instance, make_config):
    with Instance(make_config(checkpoint_id="no-such-step")) as relaunched:
        with pytest.raises(RegistrationRefused, match="Checkpoint 'no-such-step' not found"):
            relaunched.register()
    instance.completed(b"done")
    with Instance(make_config()) as again:
        with pytest.raises(RegistrationRefused, match="already completed"):
            again.register()


def test_checkpoint_saves_once_and_then_reads_back(server, instance):
    first = instance.checkpoint("step-1", b"one")
    assert (first.found, first.existing_state, first.should_exit) == (False, None, False)
    again = instance.checkpoint("step-1", b"two")
    assert (again.found, again.state, again.existing_state) == (True, b"one", b"one")
    assert server.instance("inst-1").checkpoint_id == "step-1"
    assert instance.get_checkpoint("step-1") == b"one"
    assert instance.get_checkpoint("step-2") is None


def test_checkpoint_reports_signals_without_acting_on_them(server, instance):
    send_signal(server, "inst-1", SignalType.PAUSE, b"maintenance")
    send_custom_signal(server, "inst-1", "approval", b"yes")
    result = instance.checkpoint("approval", b"")
    assert result.pending_signal == Signal(SignalType.PAUSE, b"maintenance")
    assert result.custom_signal == CustomSignal("approval", b"yes")
    assert (result.should_pause, result.should_cancel, result.should_exit) == (True, False, True)
    assert server.instance("inst-1").status is RUNNING


def test_events_change_the_instance_as_reported(server, instance, make_config):
    instance.heartbeat()
    instance.custom_event("progress", b"50%")
    (custom,) = events(server, "inst-1", records.EventType.CUSTOM)
    assert (custom.subtype, custom.payload) == ("progress", b"50%")
    assert len(events(server, "inst-1", records.EventType.HEARTBEAT)) == 1
    instance.suspended()
    assert instance.status().status is records.InstanceStatus.SUSPENDED
    with Instance(make_config("inst-2")) as other:
        other.register()
        other.failed("boom")
        status = other.status()
    assert (status.status, status.error) == (records.InstanceStatus.FAILED, "boom")
    instance.register()
    instance.completed(b'{"ok": true}')
    status = instance.status()
    assert (status.status, status.output) == (records.InstanceStatus.COMPLETED, b'{"ok": true}')
    assert status.finished_at_ms is not None


def test_status_of_an_unknown_instance(instance):
    status = instance.status("nobody")
    assert status.status is None and status.error == "Instance not found"


def test_server_errors_carry_the_code_and_message(make_config):
    with Instance(make_config("never-registered")) as instance:
        with pytest.raises(ServerError) as raised:
            instance.checkpoint("step", b"")
    assert raised.value.code == "CHECKPOINT_ERROR"
    assert raised.value.message == "Instance 'never-registered' not found"


def test_poll_signals_is_rate_limited_unless_forced(server, make_config):
    with Instance(make_config(signal_poll_interval_ms=60_000)) as instance:
        instance.register()
        assert instance.poll_signals().pending_signal is None  # the first poll is immediate
        send_signal(server, "inst-1", SignalType.CANCEL, b"stop")
        assert instance.poll_signals().pending_signal is None  # within the interval
        polled = instance.poll_signals(force=True)
        assert polled.pending_signal == Signal(SignalType.CANCEL, b"stop")
        assert polled.should_cancel


def test_poll_signals_takes_the_custom_signal_of_a_checkpoint(server, instance):
    send_custom_signal(server, "inst-1", "approval", b"granted")
    assert instance.poll_signals().custom_signal is None  # no checkpoint id, not touched
    assert instance.poll_signals("approval").custom_signal == CustomSignal("approval", b"granted")
    assert instance.poll_signals("approval").custom_signal is None  # taken once


def test_acknowledgements_are_stored_when_the_call_returns(server, instance):
    send_signal(server, "inst-1", SignalType.PAUSE)
    instance.acknowledge_signal(SignalType.PAUSE)
    assert server.read(lambda tx: tx.get_pending_signal("inst-1")) is None
    send_signal(server, "inst-1", SignalType.CANCEL)
    instance.acknowledge_signal(SignalType.CANCEL)
    assert server.instance("inst-1").status is records.InstanceStatus.CANCELLED


def test_retry_attempts_are_stored_when_the_call_returns(server, instance):
    instance.record_retry_attempt("step", 2, "timeout")
    stored = server.read(lambda tx: tx.get_checkpoint("inst-1", "step::retry::2"))
    assert stored.state == b"timeout"


def test_the_background_heartbeat_reports_at_the_interval(server, make_config):
    with Instance(make_config(heartbeat_interval_ms=50)) as instance:
        instance.register()
        time.sleep(0.4)  # the script is busy; heartbeats go on from the loop thread
        assert instance.checkpoint("busy", b"").found is False
    beats = len(events(server, "inst-1", records.EventType.HEARTBEAT))
    assert beats >= 2
    time.sleep(0.15)
    assert len(events(server, "inst-1", records.EventType.HEARTBEAT)) == beats  # stopped at close


def test_a_zero_interval_means_no_background_heartbeat(server, instance):
    time.sleep(0.1)
    assert events(server, "inst-1", records.EventType.HEARTBEAT) == []


def test_a_closed_instance_says_so(make_config):
    instance = Instance(make_config())
    instance.close()
    instance.close()
    with pytest.raises(ClientError, match="'inst-1': this Instance is closed"):
        instance.heartbeat()


def test_the_async_api_has_the_same_operations(server, make_config):
    async def script():
        async with AsyncInstance(make_config("async-1", heartbeat_interval_ms=20)) as instance:
            await instance.register()
            saved = await instance.checkpoint("step", b"state")
            again = await instance.checkpoint("step", b"other")
            await asyncio.sleep(0.1)
            await instance.completed(b"42")
            return saved.found, again.state, (await instance.status()).status

    assert asyncio.run(script()) == (False, b"state", records.InstanceStatus.COMPLETED)
    assert events(server, "async-1", records.EventType.HEARTBEAT)
