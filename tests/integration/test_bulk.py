"""stop, retry and signal on many instances chosen by filters, with a real launcher."""

from __future__ import annotations

import datetime as dt
import json

from runtara import clock, records
from tests.integration.test_launcher import Launching
from tests.support import run_cli, wait_for

Status = records.InstanceStatus


def start_broken(launching: Launching, count: int, *arguments: str, prefix: str) -> list[str]:
    broken = launching.folder / "BROKEN"
    broken.touch()
    ids = [
        launching.start(
            "--id", f"{prefix}-{n:02}", *arguments, script="broken.py", BROKEN=str(broken)
        )
        for n in range(count)
    ]
    for instance_id in ids:
        assert launching.finished(instance_id).status is Status.FAILED
    return ids


def retried(launching: Launching, instance_id: str) -> int:
    return sum(e.event_type is records.EventType.RETRIED for e in launching.events(instance_id))


def set_created_at(launching: Launching, instance_id: str, when: dt.datetime) -> None:
    marker = "%(t)s" if launching.url.startswith("postgres") else ":t"
    key = "%(id)s" if launching.url.startswith("postgres") else ":id"
    launching.storage.run(
        lambda tx: tx._execute(
            f"UPDATE instances SET created_at = {marker} WHERE instance_id = {key}",
            {"t": tx._time(when), "id": instance_id},
        )
    )


def test_retry_by_filters_resumes_exactly_the_recent_failed_ones(either):
    launching = either
    (old,) = start_broken(launching, 1, prefix="old")
    set_created_at(launching, old, clock.utc_now() - dt.timedelta(hours=2))
    recent = start_broken(launching, 4, prefix="recent")
    (launching.folder / "BROKEN").unlink()
    fine = launching.start(
        "--id", "fine", script="broken.py", BROKEN=str(launching.folder / "BROKEN")
    )
    assert launching.finished(fine).status is Status.COMPLETED

    done = launching.cli("retry", "--status", "failed", "--created-after", "1h", "--yes")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert sorted(line.split()[0] for line in lines[:-1]) == recent
    assert all(line.split()[1] == "ok" for line in lines[:-1]), done.stdout
    assert lines[-1] == "retry: 4 ok, 0 refused, 0 errors of 4"
    for instance_id in recent:
        assert launching.finished(instance_id).status is Status.COMPLETED
        assert retried(launching, instance_id) == 1
    assert launching.instance(old).status is Status.FAILED
    assert retried(launching, old) == 0
    assert retried(launching, fine) == 0


def test_an_interrupted_retry_rerun_does_the_rest_and_nothing_twice(launching):
    ids = start_broken(launching, 12, "--tenant", "acme", prefix="f")

    # --dry-run lists them and changes nothing; more than 10 need --yes
    dry = launching.cli("retry", "--tenant", "acme", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[0].split() == ["ID", "STATUS", "TENANT", "CREATED", "ERROR"]
    assert "dry run: 12 instances would be retried" in dry.stdout
    assert all(f in dry.stdout for f in ids)
    refused = launching.cli("retry", "--tenant", "acme")
    assert refused.returncode == 2
    assert "12 instances match" in refused.stderr and "--yes" in refused.stderr
    assert all(launching.instance(i).status is Status.FAILED for i in ids)
    assert all(retried(launching, i) == 0 for i in ids)

    (launching.folder / "BROKEN").unlink()
    # the first run is cut short after half of them
    first = launching.cli("retry", "--tenant", "acme", "--limit", "6", "--json")
    assert first.returncode == 0, first.stderr
    outcomes = [json.loads(line) for line in first.stdout.splitlines()]
    assert outcomes[-1] == {"summary": {"matched": 6, "ok": 6, "refused": 0, "error": 0}}
    halfway = {o["instance_id"] for o in outcomes[:-1]}
    assert len(halfway) == 6 and {o["outcome"] for o in outcomes[:-1]} == {"ok"}

    again = launching.cli("retry", "--tenant", "acme", "--status", "failed", "--yes")
    assert again.returncode == 0, again.stderr
    rest = {line.split()[0] for line in again.stdout.splitlines()[:-1]}
    assert rest == set(ids) - halfway
    for instance_id in ids:
        assert launching.finished(instance_id).status is Status.COMPLETED
    assert {i: retried(launching, i) for i in ids} == dict.fromkeys(ids, 1)

    # nothing is left to retry
    last = launching.cli("retry", "--tenant", "acme", "--yes")
    assert last.returncode == 0 and "no instance matches" in last.stdout


def test_filters_and_an_id_are_exclusive_and_filters_are_needed(launching):
    both = launching.cli("stop", "some-id", "--status", "running")
    assert both.returncode == 2 and "not both" in both.stderr
    neither = launching.cli("retry")
    assert neither.returncode == 2 and "at least one filter" in neither.stderr


def test_signal_pause_goes_to_the_suspended_ones(launching):
    flag = launching.folder / "BROKEN"
    sleepers = [
        launching.start("--id", f"nap-{n}", script="broken.py", BROKEN=str(flag), NAP="600")
        for n in range(3)
    ]
    for instance_id in sleepers:
        wait_for(lambda i=instance_id: launching.instance(i).status is Status.SUSPENDED, 30)
    sent = launching.cli("signal", "--status", "suspended", "pause", "--payload", "window")
    assert sent.returncode == 0, sent.stderr
    assert sorted(line.split()[0] for line in sent.stdout.splitlines()[:-1]) == sleepers
    for instance_id in sleepers:
        pending = launching.storage.run(
            lambda tx, i=instance_id: tx.get_pending_signal(i), write=False
        )
        assert pending.signal_type is records.SignalType.PAUSE


def test_stop_by_tenant_cancels_that_tenants_instances_only(launching):
    ids = {
        tenant: [launching.start("--tenant", tenant, script="stubborn.py") for _ in range(2)]
        for tenant in ("x", "y")
    }
    for instance_id in ids["x"] + ids["y"]:
        wait_for(lambda i=instance_id: launching.instance(i).status is Status.RUNNING, 30)
    stopped = launching.cli("stop", "--tenant", "x", "--yes", "--grace", "1s")
    assert stopped.returncode == 0, stopped.stderr
    assert sorted(line.split()[0] for line in stopped.stdout.splitlines()[:-1]) == sorted(ids["x"])
    for instance_id in ids["x"]:
        assert launching.finished(instance_id, 30).status is Status.CANCELLED
    assert all(launching.instance(i).status is Status.RUNNING for i in ids["y"])
    # a rerun finds nothing live left in x
    rerun = launching.cli("stop", "--tenant", "x", "--yes")
    assert rerun.returncode == 0 and "no instance matches" in rerun.stdout


def test_retry_by_filters_through_the_management_service(launching):
    ids = start_broken(launching, 3, prefix="remote")
    (launching.folder / "BROKEN").unlink()
    remote = launching.server.management_target()
    read_only = run_cli(
        "retry",
        "--status",
        "failed",
        "--yes",
        *launching.server.management_target("read"),
        cwd=launching.folder,
    )
    assert read_only.returncode == 1, read_only.stderr
    assert "needs the operate credential" in read_only.stderr + read_only.stdout
    assert all(launching.instance(i).status is Status.FAILED for i in ids)

    done = run_cli("retry", "--status", "failed", "--yes", "--json", *remote, cwd=launching.folder)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[-1] == {"summary": {"matched": 3, "ok": 3, "refused": 0, "error": 0}}
    assert sorted(o["instance_id"] for o in lines[:-1]) == ids
    assert {o["outcome"] for o in lines[:-1]} == {"ok"}
    for instance_id in ids:
        assert launching.finished(instance_id).status is Status.COMPLETED
        assert retried(launching, instance_id) == 1
    rerun = run_cli("retry", "--status", "failed", "--yes", *remote, cwd=launching.folder)
    assert rerun.returncode == 0 and "no instance matches" in rerun.stdout
