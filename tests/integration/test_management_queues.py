"""Queues, delayed and deduplicated starts, and schedules through a running
server's management service (RemoteAdmin over QUIC on loopback)."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.util

import pytest

from runtara import clock, errors, mapping, records
from runtara.admin.remote import RemoteAdmin
from runtara.client.connection import Connection
from runtara.launcher.spec import LaunchSpec
from runtara.protocol import instance_pb2 as pb
from runtara.protocol import management_pb2 as mpb
from tests.support import LoopbackServer

needs_schedules = pytest.mark.skipif(
    importlib.util.find_spec("runtara.storage.schedules") is None,
    reason="the schedules' storage (runtara/storage/schedules.py) is not there yet",
)


@pytest.fixture
def server(database_url):
    running = LoopbackServer(database_url, management_addr=("127.0.0.1", 0))
    yield running
    running.stop()


def remote(server: LoopbackServer, role: str = "operate") -> RemoteAdmin:
    return RemoteAdmin(
        server.server.management_address,
        token=getattr(server.credentials, role),
        fingerprint=server.server.identity.fingerprint,
    )


@pytest.fixture
def admin(server):
    with remote(server) as operator:
        yield operator


def raw_call(server: LoopbackServer, **oneof) -> mpb.RpcResponse:
    """One management request as a client of another version might send it."""

    async def call():
        connection = await Connection.open(*server.server.management_address, timeout=5)
        try:
            request = mpb.RpcRequest(token=server.credentials.operate, **oneof)
            return await connection.call(request, mpb.RpcResponse, timeout=5)
        finally:
            await connection.close()

    return asyncio.run(call())


def job(*, queue: str = records.DEFAULT_QUEUE, key: str | None = None, priority: int = 0):
    return LaunchSpec(("true",), queue=queue, key=key, priority=priority)


def by_name(views: list[records.QueueView]) -> dict[str, records.QueueView]:
    return {view.queue.name: view for view in views}


# --- queues ---------------------------------------------------------------------


def test_queue_limits_are_set_removed_and_listed(admin):
    assert [view.queue.name for view in admin.list_queues()] == ["default"]
    queue = admin.set_queue("emails", concurrency=5, per_key=2, rate=(10, 60.0))
    assert queue == records.Queue("emails", 5, 2, 10, 60.0, False)
    # only what is named changes; None removes a limit
    queue = admin.set_queue("emails", per_key=None, paused=True)
    assert queue == records.Queue("emails", 5, None, 10, 60.0, True)
    queue = admin.set_queue("emails", rate=None, concurrency=None)
    assert queue == records.Queue("emails", paused=True)
    admin.set_queue("slow", rate=(1, 0.25))
    views = by_name(admin.list_queues())
    assert sorted(views) == ["default", "emails", "slow"]
    assert views["emails"].queue == records.Queue("emails", paused=True)
    assert views["slow"].queue == records.Queue("slow", rate_limit=1, rate_period=0.25)
    assert views["default"] == records.QueueView(records.Queue("default"), records.QueueFigures())
    resumed = admin.set_queue("emails", paused=False)
    assert resumed == records.Queue("emails")


def test_queue_figures_and_why_an_instance_waits(admin):
    admin.set_queue("emails", paused=True)
    assert not admin.start_instance(
        "mail-1", "acme", job(queue="emails", key="customer-7", priority=5), None
    )
    admin.start_instance("mail-2", "acme", job(queue="emails"), None, delay=3600)
    emails = by_name(admin.list_queues())["emails"]
    assert emails.figures == records.QueueFigures(running=0, due=1, later=1)
    details = admin.instance_details("mail-1")
    assert details.wait_reason == "queue emails is paused"
    launch = details.launch
    assert (launch.queue, launch.key, launch.priority) == ("emails", "customer-7", 5)
    admin.set_queue("emails", paused=False)
    waiting = admin.instance_details("mail-1").wait_reason
    assert waiting.startswith("due: waiting for a launcher")
    plain = admin.start_instance("plain", "acme", job(), None)
    assert not plain
    launch = admin.instance_details("plain").launch
    assert (launch.queue, launch.key, launch.priority) == ("default", None, 0)


# --- starts ---------------------------------------------------------------------


def test_a_start_repeated_alike_is_deduplicated(admin):
    assert admin.start_instance("once", "acme", job(), b'{"n": 1}') is False
    assert admin.start_instance("once", "acme", job(), b'{"n": 1}') is True
    with pytest.raises(errors.OperationRefused, match="already exists and is pending"):
        admin.start_instance("once", "acme", job(), b'{"n": 2}')
    with pytest.raises(errors.OperationRefused, match="already exists"):
        admin.start_instance("once", "globex", job(), b'{"n": 1}')
    page = admin.list_instances()
    assert page.total == 1


def test_not_before_and_delay_are_honoured(admin):
    now = clock.utc_now()
    later = (now + dt.timedelta(days=1)).replace(microsecond=0)
    admin.start_instance("at-time", "acme", job(), None, not_before=later)
    details = admin.instance_details("at-time")
    assert details.launch.next_launch_at == later
    assert details.wait_reason == f"not before {later.isoformat(timespec='seconds')}"
    admin.start_instance("delayed", "acme", job(), None, delay=600)
    details = admin.instance_details("delayed")
    due = details.launch.next_launch_at
    assert now + dt.timedelta(seconds=590) < due < clock.utc_now() + dt.timedelta(seconds=610)
    assert details.wait_reason.startswith("not before ")
    # a time past, or a negative delay, is at once
    admin.start_instance("past", "acme", job(), None, not_before=now - dt.timedelta(hours=1))
    admin.start_instance("negative", "acme", job(), None, delay=-5)
    for instance_id in ("past", "negative"):
        details = admin.instance_details(instance_id)
        assert details.launch.next_launch_at <= clock.utc_now()
        assert details.wait_reason.startswith("due: ")


def test_a_finished_instance_gets_no_wait_reason(admin, server):
    admin.start_instance("job", "acme", job(), None)
    client = server.client()
    client.register("job", "acme")
    client.event("job", pb.EVENT_COMPLETED, b"done")
    details = admin.instance_details("job")
    assert details.instance.status == records.InstanceStatus.COMPLETED
    assert details.wait_reason is None


# --- schedules ------------------------------------------------------------------


def add_hourly(admin, name: str = "hourly", **changes) -> records.Schedule:
    arguments = dict(
        cron=None,
        every=3600.0,
        timezone="UTC",
        overlap="skip",
        catch_up="none",
        tenant_id="acme",
        spec=job(queue="reports"),
        payload=b'{"report": "sales"}',
    )
    arguments.update(changes)
    return admin.add_schedule(name, **arguments)


@needs_schedules
def test_schedules_round_trip(admin):
    assert admin.list_schedules() == []
    added = add_hourly(admin)
    assert (added.name, added.cron, added.every) == ("hourly", None, 3600.0)
    assert (added.timezone, added.overlap, added.catch_up) == ("UTC", "skip", "none")
    assert added.tenant_id == "acme" and added.input == b'{"report": "sales"}'
    assert LaunchSpec.from_json(added.spec).queue == "reports"
    assert not added.paused and added.ticks == 0 and added.last_instance_id is None
    nightly = add_hourly(admin, "nightly", cron="30 2 * * *", every=None, payload=None)
    assert nightly.cron == "30 2 * * *" and nightly.every is None and nightly.input is None
    listed = admin.list_schedules()
    assert [schedule.name for schedule in listed] == ["hourly", "nightly"]
    assert listed[0] == added
    # whole milliseconds on the wire, like every time
    assert listed[1].next_tick_at > clock.utc_now()

    with pytest.raises(errors.OperationRefused):
        add_hourly(admin)  # exists
    replaced = add_hourly(admin, every=60.0, replace=True)
    assert replaced.every == 60.0

    paused = admin.pause_schedule("hourly", True)
    assert paused.paused and paused.name == "hourly"
    assert admin.list_schedules()[0].paused
    assert not admin.pause_schedule("hourly", False).paused

    started = admin.trigger_schedule("hourly")
    assert started
    details = admin.instance_details(started)
    assert details.instance.tenant_id == "acme"
    assert details.launch.queue == "reports"
    after = {schedule.name: schedule for schedule in admin.list_schedules()}["hourly"]
    assert after.last_instance_id == started and after.ticks == 1

    admin.remove_schedule("hourly")
    assert [schedule.name for schedule in admin.list_schedules()] == ["nightly"]
    assert admin.instance_details(started) is not None  # its instances stay
    with pytest.raises(errors.OperationRefused, match="Schedule 'hourly' not found"):
        admin.remove_schedule("hourly")


@needs_schedules
def test_unknown_schedules_and_bad_schedules_are_refused_clearly(server, admin):
    for action in (
        lambda: admin.pause_schedule("ghost", True),
        lambda: admin.pause_schedule("ghost", False),
        lambda: admin.trigger_schedule("ghost"),
        lambda: admin.remove_schedule("ghost"),
    ):
        with pytest.raises(errors.OperationRefused, match="ghost"):
            action()
    with pytest.raises(errors.OperationRefused):
        add_hourly(admin, "broken", cron="not a cron", every=None)
    with pytest.raises(errors.OperationRefused, match="command"):
        add_hourly(admin, "empty", spec=LaunchSpec(()))
    assert admin.list_schedules() == []
    unspecified = raw_call(
        server, change_schedule=mpb.ChangeScheduleRequest(name="ghost")
    ).change_schedule
    assert not unspecified.success and "Unknown schedule action" in unspecified.error


# --- credentials and bad input -------------------------------------------------


def test_the_read_credential_lists_but_does_not_change(server, admin):
    admin.set_queue("emails", concurrency=3)
    with remote(server, "read") as reader:
        assert by_name(reader.list_queues())["emails"].queue.concurrency == 3
        with pytest.raises(errors.AccessDenied, match="set_queue needs the operate credential"):
            reader.set_queue("emails", concurrency=4)
        with pytest.raises(errors.AccessDenied, match="start_instance needs the operate"):
            reader.start_instance("x", "acme", job(), None)
        with pytest.raises(errors.AccessDenied, match="change_schedule needs the operate"):
            reader.trigger_schedule("any")
        with pytest.raises(errors.AccessDenied, match="add_schedule needs the operate"):
            add_hourly(reader)
        if importlib.util.find_spec("runtara.storage.schedules") is not None:
            assert reader.list_schedules() == []
    assert by_name(admin.list_queues())["emails"].queue.concurrency == 3


def test_bad_queue_changes_are_refused_with_the_reason(server, admin):
    with pytest.raises(errors.OperationRefused, match="--concurrency must be 1 or more"):
        admin.set_queue("emails", concurrency=0)
    with pytest.raises(errors.OperationRefused, match="--per-key must be 1 or more"):
        admin.set_queue("emails", per_key=-1)
    with pytest.raises(errors.OperationRefused, match="--rate must be N/DURATION"):
        admin.set_queue("emails", rate=(5, 0.0))
    with pytest.raises(errors.OperationRefused, match="queue is required"):
        admin.set_queue("", concurrency=2)
    assert [view.queue.name for view in admin.list_queues()] == ["default"]
    for request, said in (
        (mpb.SetQueueRequest(name="q", clear=["speed"]), "cannot clear speed"),
        (mpb.SetQueueRequest(name="q", concurrency=2, clear=["concurrency"]), "both set and"),
        (mpb.SetQueueRequest(name="q", rate_limit=2), "rate_limit and rate_period_seconds"),
    ):
        reply = raw_call(server, set_queue=request).set_queue
        assert not reply.success and said in reply.error
        assert not reply.HasField("queue")
    with pytest.raises(errors.OperationRefused, match="queue and key must be text|--queue"):
        admin.start_instance("bad", "acme", job(queue=""), None)


# --- the mapping, both ways -------------------------------------------------------


def test_queue_changes_map_to_the_wire_and_back():
    unchanged = mapping.queue_changes_to_wire("q")
    assert mapping.queue_changes_from_wire(unchanged) == {}
    every = mapping.queue_changes_to_wire(
        "q", concurrency=3, per_key=None, rate=(2, 1.5), paused=False
    )
    assert list(every.clear) == ["per_key"]
    assert mapping.queue_changes_from_wire(every) == {
        "concurrency": 3,
        "per_key": None,
        "rate": (2, 1.5),
        "paused": False,
    }
    cleared = mapping.queue_changes_to_wire("q", concurrency=None, rate=None)
    assert mapping.queue_changes_from_wire(cleared) == {"concurrency": None, "rate": None}


def test_records_map_to_the_wire_and_back():
    queue = records.Queue("q", 1, 2, 3, 0.5, True)
    assert mapping.queue_from_wire(mapping.queue_to_wire(queue)) == queue
    view = records.QueueView(records.Queue("d"), records.QueueFigures(1, 2, 3))
    assert mapping.queue_view_from_wire(mapping.queue_view_to_wire(view)) == view
    at = dt.datetime(2030, 1, 2, 3, 4, 5, 6000, tzinfo=dt.timezone.utc)
    schedule = records.Schedule(
        "s", "0 * * * *", None, "Europe/Oslo", "allow", "all", "t", "{}", b"", at, at
    )
    assert mapping.schedule_from_wire(mapping.schedule_to_wire(schedule)) == schedule
    ticked = records.Schedule(
        "s", None, 2.5, "UTC", "skip", "one", "t", "{}", None, at, at, True, at, "i", 4, 5
    )
    assert mapping.schedule_from_wire(mapping.schedule_to_wire(ticked)) == ticked
    launch = records.Launch("i", "{}", None, 3, queue="q", key="k", priority=-4)
    assert mapping.launch_from_wire("i", mapping.launch_to_wire(launch)) == launch
    plain = records.Launch("i", "{}", None, 3)
    assert mapping.launch_from_wire("i", mapping.launch_to_wire(plain)) == plain
