"""Schedules with real servers: an interval schedule starts one instance a tick
whichever server process takes it, and after a server was down the missed ticks
are started as the schedule's catch-up policy says."""

from __future__ import annotations

import datetime as dt
import json
import signal
import sys
import time

import pytest

from runtara import records
from tests.integration.test_launcher import WORKFLOWS, Launching
from tests.support import ServerProcess, run_cli, sqlite_url

TICK = dt.timedelta(seconds=2)


def add_schedule(launching: Launching, name: str, *flags: str):
    added = run_cli(
        "schedule",
        "add",
        name,
        "--every",
        "2s",
        *flags,
        "--database-url",
        launching.url,
        "--",
        sys.executable,
        str(WORKFLOWS / "scheduled.py"),
        cwd=launching.folder,
    )
    assert added.returncode == 0, added.stderr
    return added


def schedule_cli(launching: Launching, *arguments: str):
    done = run_cli("schedule", *arguments, "--database-url", launching.url, cwd=launching.folder)
    assert done.returncode == 0, done.stderr
    return done


def ticks_of(launching: Launching, name: str) -> list[dt.datetime]:
    """The tick times of the schedule's instances, oldest first."""
    instances = launching.storage.run(lambda tx: tx.list_instances(limit=1000), write=False)
    return sorted(
        dt.datetime.fromisoformat(i.instance_id.split("@", 1)[1].replace("Z", "+00:00"))
        for i in instances
        if i.instance_id.startswith(f"{name}@")
    )


def shown(launching: Launching, name: str) -> dict:
    return json.loads(schedule_cli(launching, "show", name, "--json").stdout)


@pytest.fixture(params=["two processes on sqlite", "two servers on postgres"])
def servers(request, tmp_path):
    if request.param == "two processes on sqlite":
        running = [Launching(tmp_path, sqlite_url(tmp_path), "--processes", "2")]
    else:
        url = request.getfixturevalue("postgres_url")
        running = [Launching(tmp_path / "one", url), Launching(tmp_path / "two", url)]
    yield running
    for each in running:
        each.stop()


def test_every_2s_over_11s_starts_5_or_6_instances_one_per_tick(servers):
    first = servers[0]
    add_schedule(first, "beat")
    time.sleep(11)
    schedule_cli(first, "pause", "beat")
    ticks = ticks_of(first, "beat")
    assert 5 <= len(ticks) <= 6, ticks
    assert all(later - earlier == TICK for earlier, later in zip(ticks, ticks[1:], strict=False)), (
        ticks
    )
    assert shown(first, "beat")["ticks"] == len(ticks)
    for tick in ticks:
        instance_id = f"beat@{tick:%Y-%m-%dT%H:%M:%SZ}"
        done = first.finished(instance_id)
        assert done.status is records.InstanceStatus.COMPLETED, done.error
        stamp = tick.strftime("%Y-%m-%dT%H:%M:%SZ")
        output = json.loads(done.output)
        assert output["input"]["scheduled_at"].startswith(stamp[:-1])
        assert output["env"].startswith(stamp[:-1])


def test_after_a_restart_missed_ticks_are_started_as_the_catch_up_policy_says(either):
    add_schedule(either, "every-tick", "--catch-up", "all", "--overlap", "allow")
    add_schedule(either, "only-on-time", "--catch-up", "none", "--overlap", "allow")
    add_schedule(either, "latest-only", "--catch-up", "one", "--overlap", "allow")
    time.sleep(3)
    either.server.signal(signal.SIGTERM)
    assert either.server.wait() == 0
    down = time.time()
    time.sleep(7)  # three or four ticks missed
    either.server = ServerProcess(*either.flags, cwd=either.folder)
    time.sleep(2.5)
    for name in ("every-tick", "only-on-time", "latest-only"):
        schedule_cli(either, "pause", name)
    up = dt.datetime.fromtimestamp(down + 7, dt.timezone.utc)
    gone = dt.datetime.fromtimestamp(down, dt.timezone.utc)

    every = ticks_of(either, "every-tick")
    assert all(later - earlier == TICK for earlier, later in zip(every, every[1:], strict=False)), (
        every
    )
    assert sum(1 for tick in every if gone < tick < up) >= 3  # the missed ones, caught up
    assert shown(either, "every-tick")["skipped"] == 0

    on_time = ticks_of(either, "only-on-time")
    assert not any(gone + TICK < tick < up - TICK for tick in on_time), on_time
    assert shown(either, "only-on-time")["skipped"] >= 2

    latest = ticks_of(either, "latest-only")
    missed = [tick for tick in latest if gone + TICK < tick < up - TICK]
    assert len(missed) <= 1, latest
    assert shown(either, "latest-only")["skipped"] >= 1
