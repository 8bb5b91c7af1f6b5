"""Queues with real servers and processes: a concurrency limit across two server
processes and across two servers sharing PostgreSQL, a per-key limit, a priority,
a delay, idempotent starts, and the ``queue`` command."""

from __future__ import annotations

import json
import sys

import pytest

from runtara import records
from tests.integration.test_launcher import WORKFLOWS, Launching
from tests.support import run_cli, sqlite_url

HOLD = "0.6"


def runs(track) -> dict[str, tuple[str, float, float]]:
    """Per instance: its key, when it began and when it ended (from the TRACK file)."""
    began: dict[str, tuple[str, float]] = {}
    spans = {}
    for line in track.read_text().splitlines():
        what, instance_id, key, moment = line.split()
        if what == "start":
            began[instance_id] = (key, float(moment))
        else:
            key, start = began[instance_id]
            spans[instance_id] = (key, start, float(moment))
    return spans


def most_at_once(spans) -> int:
    moments = sorted(
        [(start, 1) for _, start, _ in spans] + [(end, -1) for _, _, end in spans],
        key=lambda each: (each[0], each[1]),
    )
    running = peak = 0
    for _, change in moments:
        running += change
        peak = max(peak, running)
    return peak


def launched_spans(launching: Launching, ids: list[str]) -> list[tuple[str, float, float]]:
    """Per attempt: from its launch to its recorded exit, as the launcher saw them. A
    claim is released only with the exit recorded, so these spans are what the
    queue's limits bound; they overlap whenever claims do, however slowly the
    processes start."""
    spans = []
    for instance_id in ids:
        began = None
        for event in launching.events(instance_id):
            if event.event_type is records.EventType.LAUNCHED:
                began = event.created_at.timestamp()
            elif event.event_type is records.EventType.EXITED and began is not None:
                spans.append(("-", began, event.created_at.timestamp()))
                began = None
    return spans


def queue_cli(launching: Launching, *arguments: str):
    return run_cli("queue", *arguments, "--database-url", launching.url, cwd=launching.folder)


def start_tracked(launching: Launching, count: int, *flags: str, prefix="job", **env) -> list[str]:
    track = launching.folder / "track.txt"
    return [
        launching.start(
            "--id",
            f"{prefix}-{number}",
            "--queue",
            "payments",
            *flags,
            script="tracked.py",
            TRACK=str(track),
            HOLD=HOLD,
            **env,
        )
        for number in range(count)
    ]


def all_completed(launching: Launching, ids: list[str]) -> None:
    for instance_id in ids:
        done = launching.finished(instance_id, timeout=120)
        assert done.status is records.InstanceStatus.COMPLETED, done.error


@pytest.fixture
def two_processes(tmp_path):
    running = Launching(tmp_path, sqlite_url(tmp_path), "--processes", "2")
    yield running
    running.stop()


def test_concurrency_2_runs_at_most_2_of_8_on_a_two_process_server(two_processes):
    assert queue_cli(two_processes, "set", "payments", "--concurrency", "2").returncode == 0
    ids = start_tracked(two_processes, 8)
    all_completed(two_processes, ids)
    spans = runs(two_processes.folder / "track.txt")
    assert len(spans) == 8
    assert most_at_once(spans.values()) <= 2
    assert most_at_once(launched_spans(two_processes, ids)) == 2


def test_concurrency_2_holds_across_two_servers_sharing_postgresql(tmp_path, postgres_url):
    first = Launching(tmp_path / "one", postgres_url)
    second = Launching(tmp_path / "two", postgres_url)
    try:
        assert queue_cli(first, "set", "payments", "--concurrency", "2").returncode == 0
        track = tmp_path / "track.txt"
        ids = [
            (first if number % 2 else second).start(
                "--id",
                f"job-{number}",
                "--queue",
                "payments",
                script="tracked.py",
                TRACK=str(track),
                HOLD=HOLD,
            )
            for number in range(8)
        ]
        all_completed(first, ids)
        spans = runs(track)
        assert len(spans) == 8
        assert most_at_once(spans.values()) <= 2
        assert most_at_once(launched_spans(first, ids)) == 2
    finally:
        first.stop()
        second.stop()


@pytest.fixture
def either(tmp_path):
    """A launching server on SQLite: these tests are about the launcher and the
    commands; each rule they rely on is tested on both drivers in
    test_queue_claims.py, and across servers on PostgreSQL above."""
    running = Launching(tmp_path, sqlite_url(tmp_path))
    yield running
    running.stop()


def test_per_key_1_runs_one_of_a_key_at_a_time_beside_another_key(either):
    assert queue_cli(either, "set", "payments", "--per-key", "1").returncode == 0
    ids = []
    for key in ("merchant-a", "merchant-b"):
        ids += start_tracked(either, 3, "--key", key, prefix=key, KEY=key)
    all_completed(either, ids)
    spans = runs(either.folder / "track.txt")
    for key in ("merchant-a", "merchant-b"):
        assert most_at_once([span for span in spans.values() if span[0] == key]) == 1
        keyed = [instance_id for instance_id in ids if instance_id.startswith(key)]
        assert most_at_once(launched_spans(either, keyed)) == 1
    assert most_at_once(launched_spans(either, ids)) == 2  # the two keys side by side


def test_a_priority_5_started_after_three_priority_0_runs_first(either):
    assert queue_cli(either, "set", "payments", "--concurrency", "1").returncode == 0
    assert queue_cli(either, "pause", "payments").returncode == 0
    ids = start_tracked(either, 3)
    ids += start_tracked(either, 1, "--priority", "5", prefix="urgent")
    shown = run_cli("show", "job-0", "--database-url", either.url, cwd=either.folder)
    assert "queue payments is paused" in shown.stdout
    listed = run_cli("instances", "--database-url", either.url, cwd=either.folder).stdout
    assert "WAITING FOR" in listed.splitlines()[0]
    assert listed.count("queue payments is paused") == 4
    listed = json.loads(queue_cli(either, "list", "--json").stdout)
    payments = next(view for view in listed if view["queue"]["name"] == "payments")
    assert payments["figures"]["due"] == 4 and payments["queue"]["paused"] is True
    assert queue_cli(either, "resume", "payments").returncode == 0
    all_completed(either, ids)
    order = sorted(runs(either.folder / "track.txt").items(), key=lambda item: item[1][1])
    assert [instance_id for instance_id, _ in order] == ["urgent-0", "job-0", "job-1", "job-2"]


def test_a_delay_of_3s_launches_no_earlier_than_3s_after_start(either):
    instance_id = either.start("--delay", "3s", script="echo_input.py")
    created = either.instance(instance_id).created_at
    shown = run_cli("show", instance_id, "--database-url", either.url, cwd=either.folder)
    assert "not before" in shown.stdout
    done = either.finished(instance_id)
    assert done.status is records.InstanceStatus.COMPLETED, done.error
    launched = next(e for e in either.events(instance_id) if e.event_type.value == "launched")
    assert (launched.created_at - created).total_seconds() >= 3.0


def test_starting_the_same_id_and_spec_twice_answers_0_and_leaves_one_instance(either):
    flags = ("--id", "deploy-7", "--input", '{"release": 7}')
    first = either.start(*flags, script="echo_input.py")
    again = run_cli(
        "start",
        "--database-url",
        either.url,
        *flags,
        "--json",
        "--",
        *_command(either, "echo_input.py"),
        cwd=either.folder,
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"instance_id": first, "deduplicated": True}
    different = run_cli(
        "start",
        "--database-url",
        either.url,
        "--id",
        "deploy-7",
        "--input",
        '{"release": 8}',
        "--",
        *_command(either, "echo_input.py"),
        cwd=either.folder,
    )
    assert different.returncode != 0
    assert "already exists" in different.stderr
    listed = run_cli("instances", "--database-url", either.url, "--json", cwd=either.folder)
    assert [each["instance_id"] for each in json.loads(listed.stdout)["items"]] == ["deploy-7"]


def _command(launching: Launching, script: str) -> list[str]:
    return [sys.executable, str(WORKFLOWS / script)]


def test_the_queue_command_sets_lists_and_refuses_bad_limits(either):
    done = queue_cli(either, "set", "mail", "--concurrency", "3", "--rate", "10/1m")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "queue mail: concurrency 3, per key none, rate 10/60s"
    done = queue_cli(either, "set", "mail", "--rate", "none", "--per-key", "2")
    assert done.stdout.strip() == "queue mail: concurrency 3, per key 2, rate none"
    table = queue_cli(either, "list").stdout
    assert table.splitlines()[0].split() == ["QUEUE", "RUNNING", "DUE", "LATER", "LIMITS"]
    assert any(line.startswith("mail ") for line in table.splitlines())
    for bad, message in (
        (("--concurrency", "0"), "not a count of 1 or more"),
        (("--rate", "5"), "is not N/DURATION"),
        (("--rate", "5/soon"), "--rate"),
    ):
        refused = queue_cli(either, "set", "mail", *bad)
        assert refused.returncode == 2, refused
        assert message in refused.stderr
    assert queue_cli(either, "frobnicate", "mail").returncode == 2
