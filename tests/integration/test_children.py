"""Child instances through a real server and launcher: a parent starts children
and waits for them across a SIGKILL and its durable sleeps; stopping a parent
stops its children (unless abandoned); the child credential's narrow scope."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest

from runtara import credentials, errors, records
from runtara.protocol import management_pb2 as mpb
from runtara.sdk import children
from tests.integration.test_launcher import Launching
from tests.support import free_udp_port, wait_for

Status = records.InstanceStatus


@pytest.fixture
def launcher_flags() -> tuple[str, ...]:
    """The launching servers of these tests take management requests."""
    return ("--management-addr", f"127.0.0.1:{free_udp_port()}")


def start(launching: Launching, instance_id: str, given: dict) -> str:
    return launching.start(
        "--id",
        instance_id,
        "--input",
        json.dumps(given),
        script="parent_children.py",
        EFFECTS=str(launching.folder / "effects.txt"),
        KILL_FLAG=str(launching.folder / "killed.flag"),
    )


def launches_of(launching: Launching, instance_id: str) -> int:
    return sum(1 for kind, _ in launching.attempts(instance_id) if kind == "launched")


def test_a_parent_killed_while_waiting_starts_no_child_twice_and_sums_them(either):
    launching = either
    start(launching, "p", {"role": "parent"})
    done = launching.finished("p", timeout=120)
    assert done.status is Status.COMPLETED, (done.error, launching.server.output())
    assert json.loads(done.output) == 60
    assert (launching.folder / "killed.flag").exists()
    kids = ["p-c1", "p-c2", "p-c3"]
    ran = Counter((launching.folder / "effects.txt").read_text().split())
    assert ran == Counter(kids)  # each child ran once
    for kid in kids:
        assert launches_of(launching, kid) == 1
        launch = launching.storage.run(lambda tx, kid=kid: tx.get_launch(kid), write=False)
        assert (launch.parent_instance, launch.on_parent_cancel) == ("p", "cancel")
        assert launching.instance(kid).status is Status.COMPLETED
    children_of = launching.storage.run(lambda tx: tx.list_children("p"), write=False)
    assert [launch.instance_id for launch in children_of] == kids
    # the parent was killed once and left its process to wait at least once
    exits = [facts["outcome"] for kind, facts in launching.attempts("p") if kind == "exited"]
    assert "relaunch" in exits and "suspended" in exits, exits
    # show names the children and the parent
    shown = launching.cli("show", "p")
    assert shown.returncode == 0, shown.stderr
    assert all(kid in shown.stdout for kid in kids), shown.stdout
    shown = launching.cli("show", "p-c1")
    assert "parent" in shown.stdout and " p" in shown.stdout, shown.stdout


def test_stopping_a_parent_stops_its_children_but_not_an_abandoned_one(launching):
    start(launching, "h", {"role": "holder"})
    for kid in ("h-stopped", "h-abandoned"):
        wait_for(
            lambda kid=kid: (
                launching.instance(kid) is not None
                and launching.instance(kid).status is Status.RUNNING
            ),
            60,
        )
    stopped = launching.cli("stop", "h", "--grace", "20s")
    assert stopped.returncode == 0, stopped.stderr
    done = launching.finished("h", 60)
    assert done.status is Status.CANCELLED, done.error
    assert launching.finished("h-stopped", 60).status is Status.CANCELLED
    assert launching.instance("h-abandoned").status is Status.RUNNING
    stopped = launching.cli("stop", "h-abandoned", "--grace", "20s")
    assert stopped.returncode == 0, stopped.stderr
    assert launching.finished("h-abandoned", 60).status is Status.CANCELLED


def test_the_child_credential_starts_and_reads_its_own_children_only(launching):
    start(launching, "h", {"role": "holder"})
    wait_for(lambda: launching.instance("h-abandoned") is not None, 60)
    running = launching.server.runtime()
    environ = {
        "RUNTARA_MANAGEMENT_ADDR": running.management_addr,
        "RUNTARA_CHILD_TOKEN": credentials.child_token(running.operate_token, "h"),
    }

    async def scenario():
        client = children.Management("h", environ)
        try:
            own = await client.call(
                get_child=mpb.GetChildRequest(parent_id="h", child_id="h-stopped")
            )
            assert own.get_child.found
            # an instance that is not its child: not found
            other = await client.call(get_child=mpb.GetChildRequest(parent_id="h", child_id="h"))
            assert not other.get_child.found
            # another parent's children, starting under another parent, listing,
            # starting an instance: refused
            refusals = [
                {"get_child": mpb.GetChildRequest(parent_id="h-stopped", child_id="x")},
                {
                    "start_child": mpb.StartChildRequest(
                        parent_id="h-abandoned", child_id="x", on_parent_cancel="cancel"
                    )
                },
                {"list_instances": mpb.ListInstancesRequest()},
                {"start_instance": mpb.StartInstanceRequest(instance_id="x", tenant_id="t")},
            ]
            for request in refusals:
                with pytest.raises(errors.AccessDenied):
                    await client.call(**request)
        finally:
            await client.close()

    asyncio.run(scenario())
    assert launching.instance("x") is None
    for instance_id in ("h-abandoned", "h"):
        launching.cli("stop", instance_id)
