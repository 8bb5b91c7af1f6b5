"""`runtara-core fork`: a new instance runs again from a checkpoint of another."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from runtara import clock, errors, records
from runtara.launcher.spec import LaunchSpec
from runtara.storage import launches
from tests.integration.test_launcher import Launching
from tests.integration.test_management_queues import remote
from tests.support import LoopbackServer, run_cli

HERE = Path(__file__).parent
STEP_KEYS = [f"durable::step::{number}" for number in range(1, 6)]


def saved(launching: Launching, instance_id: str) -> list[tuple[str, bytes]]:
    """The instance's checkpoints, in the order they were saved, with their states."""

    def read(tx):
        infos = tx.list_checkpoints(instance_id, limit=1000)[::-1]
        return [
            (i.checkpoint_id, tx.get_checkpoint(instance_id, i.checkpoint_id).state) for i in infos
        ]

    return launching.storage.run(read, write=False)


def test_a_fork_runs_again_from_the_third_checkpoint_with_a_fix(either):
    launching = either
    effects = launching.folder / "effects.txt"
    original = launching.start("--id", "orig", script="fixable.py", EFFECTS=str(effects))
    failed = launching.finished(original)
    assert failed.status is records.InstanceStatus.FAILED
    assert "step 5 failed" in failed.error
    before = saved(launching, "orig")
    assert [name for name, _ in before] == STEP_KEYS[:4]
    third = before[2][0]

    forked = launching.cli("fork", "orig", "--from", third, "--env", "FIXED=1")
    assert forked.returncode == 0, forked.stderr
    new_id = forked.stdout.strip()
    assert re.fullmatch(r"orig-fork-[0-9a-f]{8}", new_id)
    assert forked.stderr == f"{new_id}: forked from orig at {third}\n"
    done = launching.finished(new_id)
    assert done.status is records.InstanceStatus.COMPLETED, done.error
    assert json.loads(done.output) == 15
    # steps 1-3 ran once (in the original), 4 in both, 5 failed there and ran here
    lines = effects.read_text().splitlines()
    assert lines == [
        "orig step 1",
        "orig step 2",
        "orig step 3",
        "orig step 4",
        "orig step 5",
        f"{new_id} step 4",
        f"{new_id} step 5",
    ]
    got = saved(launching, new_id)
    assert [name for name, _ in got] == STEP_KEYS
    assert got[:3] == before[:3]
    # the original is as it was
    assert launching.instance("orig") == failed
    assert saved(launching, "orig") == before

    shown = launching.cli("show", new_id)
    assert shown.returncode == 0, shown.stderr
    assert re.search(rf"^forked from\s+orig at {re.escape(third)}$", shown.stdout, re.M)
    as_json = json.loads(launching.cli("show", new_id, "--json").stdout)
    assert (as_json["launch"]["origin_instance"], as_json["launch"]["origin_checkpoint"]) == (
        "orig",
        third,
    )
    assert "forked from" not in launching.cli("show", "orig").stdout


def test_a_fork_from_the_latest_checkpoint_with_an_id_and_input(launching):
    effects = launching.folder / "effects.txt"
    launching.start("--id", "orig", script="fixable.py", EFFECTS=str(effects))
    launching.finished("orig")
    forked = launching.cli(
        "fork",
        "orig",
        "--from",
        "last",
        "--id",
        "again",
        "--env",
        "FIXED=1",
        "--input",
        '{"n": 1}',
        "--json",
    )
    assert forked.returncode == 0, forked.stderr
    assert json.loads(forked.stdout) == {
        "instance_id": "again",
        "forked_from": "orig",
        "checkpoint": STEP_KEYS[3],
    }
    done = launching.finished("again")
    assert done.status is records.InstanceStatus.COMPLETED, done.error
    assert effects.read_text().splitlines()[-1:] == ["again step 5"]
    launch = launching.storage.run(lambda tx: tx.get_launch("again"), write=False)
    assert launch.input == b'{"n": 1}'
    assert json.loads(launch.spec)["env"]["FIXED"] == "1"


def test_bad_forks_are_refused_with_one_clear_line(launching):
    effects = launching.folder / "effects.txt"
    launching.start("--id", "orig", script="fixable.py", EFFECTS=str(effects))
    launching.finished("orig")
    launching.storage.register_instance("bare", "default", None, launching.instance_now())
    launching.storage.checkpoint("bare", "a", b"", launching.instance_now())
    for arguments, message in (
        (("nope", "--from", "last"), "Instance 'nope' not found"),
        (("orig", "--from", "durable::step::9"), "Instance 'orig' has no checkpoint"),
        (("orig", "--from", "last", "--id", "orig"), "Instance 'orig' already exists"),
        (("bare", "--from", "a"), "Instance 'bare' was not started with `runtara-core start`"),
    ):
        refused = launching.cli("fork", *arguments)
        assert refused.returncode == 1, (arguments, refused.stderr)
        assert refused.stdout == ""
        assert len(refused.stderr.splitlines()) == 1 and message in refused.stderr, refused.stderr
    assert launching.cli("fork", "orig", "--from", "last", "--id", "f").returncode == 0
    again = launching.cli("fork", "orig", "--from", "last", "--id", "f")
    assert again.returncode == 1 and "Instance 'f' already exists" in again.stderr
    missing = launching.cli("fork", "orig")
    assert missing.returncode == 2 and "--from" in missing.stderr


def test_a_fork_through_the_management_service(database_url):
    with LoopbackServer(database_url, management_addr=("127.0.0.1", 0)) as server:
        storage = server.storage
        at = clock.utc_now()
        spec = LaunchSpec(("true",), env={"A": "1"}, queue="q", key="k", priority=2)
        # a future start: nothing launches the original while the test runs
        far = at.replace(year=at.year + 1)
        storage.run(
            lambda tx: launches.start_instance(
                tx,
                "src",
                "t",
                spec.to_json(),
                b"in",
                3,
                at,
                queue="q",
                key="k",
                priority=2,
                not_before=far,
            )
        )
        storage.register_instance("src", "t", None, at)
        for name in ("one", "two", "three"):
            storage.checkpoint("src", name, name.encode(), clock.utc_now())
        with remote(server) as admin:
            new_id, checkpoint = admin.fork_instance("src", "two", "copy", {"B": "2"}, None)
            assert (new_id, checkpoint) == ("copy", "two")
            details = admin.instance_details("copy")
            assert details.instance.checkpoint_id == "two"
            assert details.instance.tenant_id == "t"
            launch = details.launch
            assert (launch.origin_instance, launch.origin_checkpoint) == ("src", "two")
            assert (launch.queue, launch.key, launch.priority) == ("q", "k", 2)
            assert LaunchSpec.from_json(launch.spec).env == {"A": "1", "B": "2"}
            page = admin.list_checkpoints("copy")
            assert [c.checkpoint_id for c in page.items] == ["two", "one"]
            latest, at_latest = admin.fork_instance("src", None, None, {}, None)
            assert latest.startswith("src-fork-") and at_latest == "three"
            with pytest.raises(errors.OperationRefused, match="'copy' already exists"):
                admin.fork_instance("src", "one", "copy", {}, None)
            with pytest.raises(errors.OperationRefused, match="no checkpoint 'nope'"):
                admin.fork_instance("src", "nope", None, {}, None)
            assert admin.instance_details("src").instance.status is records.InstanceStatus.RUNNING
        through = run_cli(
            "fork", "src", "--from", "one", "--id", "via-cli", *server.management_target(), cwd=HERE
        )
        assert through.returncode == 0, through.stderr
        assert (through.stdout, through.stderr) == (
            "via-cli\n",
            "via-cli: forked from src at one\n",
        )
        read_only = run_cli(
            "fork", "src", "--from", "one", *server.management_target("read"), cwd=HERE
        )
        assert read_only.returncode == 1 and "needs the operate credential" in read_only.stderr
        with (
            remote(server, "read") as reader,
            pytest.raises(errors.AccessDenied, match="fork_instance needs the operate"),
        ):
            reader.fork_instance("src", "one", "by-reader", {}, None)
        assert storage.run(lambda tx: tx.get_instance("by-reader"), write=False) is None
