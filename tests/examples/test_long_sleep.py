from __future__ import annotations

import shlex
import sys

import pytest

from tests.examples.conftest import EXAMPLES, Deployment, lines, time_of
from tests.support import wait_for


@pytest.fixture
def deployment(tmp_path):
    """A server relaunching due sleepers with the example, as the README starts it."""
    command = f"{shlex.quote(sys.executable)} {shlex.quote(str(EXAMPLES / 'long_sleep.py'))}"
    running = Deployment(tmp_path, "--wake-command", command)
    yield running
    running.stop()


def test_the_script_exits_to_sleep_and_the_server_relaunches_it_to_finish(deployment, tmp_path):
    stdout = tmp_path / "run.out"
    assert deployment.run("long_sleep", "trial-1", stdout, SLEEP_SECONDS="1") == 0
    assert lines(stdout) == ["trial-1: trial started, reminder in 1 s"]
    asleep = deployment.instance("trial-1")
    assert (asleep["status"], asleep["checkpoint_id"]) == ("suspended", "sleep::trial-period")
    assert asleep["sleep_until"] is not None

    wait_for(lambda: deployment.status("trial-1") == "completed", timeout=40)
    output = deployment.output("trial-1")
    assert output["account"] == "trial-1" and output["reminded_after_seconds"] >= 1
    starts = deployment.query(
        "SELECT checkpoint_id, created_at FROM instance_events "
        "WHERE instance_id = 'trial-1' AND event_type = 'started' ORDER BY id"
    )
    assert [start["checkpoint_id"] for start in starts] == [None, "sleep::trial-period"]
    assert time_of(starts[1]["created_at"]) >= time_of(asleep["sleep_until"])
    assert any("'trial-1' is due: waking it" in line for line in deployment.server.log)
