"""``fork`` on many instances chosen by filters, with a real launcher."""

from __future__ import annotations

import json
import re

from runtara import records
from tests.integration.test_launcher import Launching

Status = records.InstanceStatus
LAST_STEP = "durable::step::4"


def start_failing(launching: Launching, count: int) -> list[str]:
    """Instances of fixable.py: four checkpoints each, then failed at step 5."""
    effects = launching.folder / "effects.txt"
    ids = [
        launching.start("--id", f"orig-{n}", script="fixable.py", EFFECTS=str(effects))
        for n in range(count)
    ]
    for instance_id in ids:
        assert launching.finished(instance_id).status is Status.FAILED
    return ids


def all_ids(launching: Launching) -> set[str]:
    listed = launching.storage.run(lambda tx: tx.list_instances(limit=1000), write=False)
    return {instance.instance_id for instance in listed}


def test_fork_by_filters_forks_each_failed_one_once_from_its_latest_checkpoint(launching):
    originals = start_failing(launching, 3)
    before = {i: launching.instance(i) for i in originals}

    dry = launching.cli("fork", "--status", "failed", "--from", "last", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run: 3 instances would be forked" in dry.stdout
    assert all_ids(launching) == set(originals)

    forked = launching.cli(
        "fork",
        "--status",
        "failed",
        "--from",
        "last",
        "--env",
        "FIXED=1",
        "--yes",
        "--json",
    )
    assert forked.returncode == 0, forked.stderr
    lines = [json.loads(line) for line in forked.stdout.splitlines()]
    assert lines[-1] == {"summary": {"matched": 3, "ok": 3, "refused": 0, "error": 0}}
    outcomes = lines[:-1]
    assert sorted(o["instance_id"] for o in outcomes) == originals
    new_ids = {}
    for outcome in outcomes:
        origin = outcome["instance_id"]
        assert outcome["outcome"] == "ok" and outcome["checkpoint"] == LAST_STEP, outcome
        assert re.fullmatch(rf"{origin}-fork-[0-9a-f]{{8}}", outcome["new_instance_id"])
        assert outcome["reason"] == f"forked as {outcome['new_instance_id']} from {LAST_STEP}"
        new_ids[origin] = outcome["new_instance_id"]

    # each one forked exactly once, the forks run (with the fix) and the originals stay
    assert all_ids(launching) == set(originals) | set(new_ids.values())
    for origin, new_id in new_ids.items():
        done = launching.finished(new_id)
        assert done.status is Status.COMPLETED, done.error
        launch = launching.storage.run(lambda tx, n=new_id: tx.get_launch(n), write=False)
        assert (launch.origin_instance, launch.origin_checkpoint) == (origin, LAST_STEP)
        assert launching.instance(origin) == before[origin]
    effects = (launching.folder / "effects.txt").read_text().splitlines()
    for new_id in new_ids.values():
        assert [line for line in effects if line.startswith(f"{new_id} ")] == [f"{new_id} step 5"]

    # the text form: one line per instance with its new id, then the summary
    only_one = launching.cli("fork", "--status", "failed", "--from", "last", "--limit", "1")
    assert only_one.returncode == 0, only_one.stderr
    first, summary = only_one.stdout.splitlines()
    assert re.fullmatch(
        rf"orig-\d\s+ok: forked as orig-\d-fork-[0-9a-f]{{8}} from {LAST_STEP}", first
    )
    assert summary == "fork: 1 ok, 0 refused, 0 errors of 1"


def test_fork_by_filters_refuses_a_named_checkpoint_and_an_id(launching):
    originals = start_failing(launching, 1)
    named = launching.cli("fork", "--status", "failed", "--from", LAST_STEP)
    assert named.returncode == 2
    assert "with filters only --from last is allowed" in named.stderr, named.stderr
    with_id = launching.cli("fork", "--status", "failed", "--from", "last", "--id", "x")
    assert with_id.returncode == 2 and "--id goes with an instance id" in with_id.stderr
    both = launching.cli("fork", originals[0], "--status", "failed", "--from", "last")
    assert both.returncode == 2 and "not both" in both.stderr
    dry_with_id = launching.cli("fork", originals[0], "--from", "last", "--dry-run")
    assert dry_with_id.returncode == 2 and "--dry-run goes with filters" in dry_with_id.stderr
    assert all_ids(launching) == set(originals)
