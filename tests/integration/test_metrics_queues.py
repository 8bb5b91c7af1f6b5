"""``/metrics`` reports every queue (running, waiting, due, paused, at its rate
limit) and every schedule (ticks, skipped ticks, last and next tick), read from
the storage at scrape time, with names that need escaping in the text format."""

from __future__ import annotations

import datetime as dt

import pytest

from runtara import records
from runtara.admin.local import LocalAdmin
from runtara.config import StorageConfig
from runtara.launcher.spec import LaunchSpec
from runtara.storage import selection
from tests.browser.serving import HttpServing
from tests.integration.test_metrics import scrape, value
from tests.support import wait_for

FAST = ("--restart-backoff", "50ms", "--restart-backoff-max", "200ms")
ODD_QUEUE = 'odd "q" \\ x'
ODD_SCHEDULE = 'nightly "report"\nsecond line \\'
LAST_TICK = dt.datetime(2026, 3, 1, 2, 0, 0, tzinfo=dt.timezone.utc)
NEXT_TICK = dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc)


def schedule(name: str, **fields) -> records.Schedule:
    """A schedule row whose next tick is far away (the server's scheduler leaves it)."""
    given = {
        "cron": "0 2 * * *",
        "every": None,
        "timezone": "UTC",
        "overlap": "skip",
        "catch_up": "none",
        "tenant_id": "metrics",
        "spec": LaunchSpec(command=("true",)).to_json(),
        "input": None,
        "created_at": LAST_TICK - dt.timedelta(days=30),
        "next_tick_at": NEXT_TICK,
        **fields,
    }
    return records.Schedule(name=name, **given)


@pytest.fixture
def site(tmp_path):
    serving = HttpServing(tmp_path, "--runs-dir", str(tmp_path / "runs"), *FAST)
    storage = selection.open_driver(StorageConfig(database_url=serving.url), workers=1)
    admin = LocalAdmin(storage)
    yield serving, admin
    # The launcher leaves running processes behind when the server stops: pause
    # the queues (nothing more is launched), then stop every instance left.
    for queue in admin.list_queues():
        admin.set_queue(queue.queue.name, paused=True)
    started = admin.list_instances().items
    for instance in started:
        if not instance.status.is_terminal:
            admin.stop_instance(instance.instance_id, 0)
    wait_for(
        lambda: all(
            admin.instance_details(
                instance.instance_id, recent_events=0
            ).instance.status.is_terminal
            for instance in started
        ),
        30,
    )
    storage.close()
    assert serving.stop() == 0


def test_queues_and_schedules_are_scraped_from_the_storage(site):
    serving, admin = site
    sleeper = LaunchSpec(command=("sleep", "60"), queue="batch")
    admin.set_queue("batch", concurrency=1)
    admin.set_queue(ODD_QUEUE, rate=(1, 3600.0))
    admin.start_instance("batch-1", "metrics", sleeper, None)
    admin.start_instance("batch-2", "metrics", sleeper, None)
    admin.start_instance("batch-3", "metrics", sleeper, None, delay=3600)
    odd = LaunchSpec(command=("sleep", "60"), queue=ODD_QUEUE)
    admin.start_instance("odd-1", "metrics", odd, None)
    admin.start_instance("odd-2", "metrics", odd, None)
    admin.storage.run(
        lambda tx: (
            tx.put_schedule(
                schedule(
                    ODD_SCHEDULE,
                    ticks=7,
                    skipped=2,
                    last_tick_at=LAST_TICK,
                    last_instance_id="x",
                )
            ),
            tx.put_schedule(schedule("hourly", cron=None, every=3600.0, paused=True)),
        )
    )

    # The launcher claims one of each queue; the other due one waits for the limit.
    samples = wait_for(
        lambda: (
            found
            if value(found := scrape(serving), "runtara_queue_running", queue="batch") == 1
            and value(found, "runtara_queue_running", queue=ODD_QUEUE) == 1
            else None
        ),
        30,
    )
    assert value(samples, "runtara_queue_waiting", queue="batch") == 2  # one due, one later
    assert value(samples, "runtara_queue_due", queue="batch") == 1
    wait_for(
        lambda: (
            value(found := scrape(serving), "runtara_queue_started_total", queue="batch") == 1
            and value(found, "runtara_queue_started_total", queue=ODD_QUEUE) == 1
        ),
        10,
    )
    assert value(samples, "runtara_queue_waiting", queue=ODD_QUEUE) == 1
    assert value(samples, "runtara_queue_rate_limited", queue=ODD_QUEUE) == 1
    assert ("runtara_queue_rate_limited", (("queue", "batch"),)) not in samples  # no rate
    assert value(samples, "runtara_queue_paused", queue="batch") == 0
    # The default queue is always reported, idle here.
    for name in ("running", "waiting", "due", "paused"):
        assert ("runtara_queue_" + name, (("queue", "default"),)) in samples
        assert value(samples, "runtara_queue_" + name, queue="default") == 0

    assert value(samples, "runtara_schedule_ticks_total", schedule=ODD_SCHEDULE) == 7
    assert value(samples, "runtara_schedule_skipped_total", schedule=ODD_SCHEDULE) == 2
    assert (
        value(samples, "runtara_schedule_last_tick_timestamp_seconds", schedule=ODD_SCHEDULE)
        == LAST_TICK.timestamp()
    )
    assert value(samples, "runtara_schedule_ticks_total", schedule="hourly") == 0
    assert value(samples, "runtara_schedule_paused", schedule="hourly") == 1
    # A schedule that never ticked has no last tick (rather than 1970).
    assert ("runtara_schedule_last_tick_timestamp_seconds", (("schedule", "hourly"),)) not in (
        samples
    )
    assert (
        value(samples, "runtara_schedule_next_tick_timestamp_seconds", schedule="hourly")
        == NEXT_TICK.timestamp()
    )

    # The text escapes the names as the format says: backslash, quote, newline.
    text = serving.get("/metrics", **serving.bearer("read")).text
    assert 'runtara_queue_running{queue="odd \\"q\\" \\\\ x"} 1.0' in text
    assert (
        'runtara_schedule_ticks_total{schedule="nightly \\"report\\"\\nsecond line \\\\"} 7.0'
        in text
    )

    # A pause shows at the next scrape.
    admin.set_queue("batch", paused=True)
    assert value(scrape(serving), "runtara_queue_paused", queue="batch") == 1
