from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

from runtara import records
from tests.support import LoopbackServer, script_environment, sqlite_url, wait_for

STATUS = records.InstanceStatus

SCRIPT = """
    import os
    from runtara import sdk

    @sdk.durable
    def step(name):
        with open(os.environ["RUNS_FILE"], "a") as runs:
            runs.write(name + "\\n")
        return name

    def workflow(instance):
        done = [step("one")]
        if os.environ.get("CRASH"):
            os._exit(3)  # killed between two steps
        instance.sleep(float(os.environ.get("NAP", "0")), key="nap", exit=True)
        done.append(step("two"))
        return done

    sdk.main(workflow)
"""


@pytest.fixture
def server(tmp_path):
    # A crashed script never closes its connection: the server drops it once idle.
    running = LoopbackServer(sqlite_url(tmp_path), idle_timeout_ms=1000, keep_alive_ms=300)
    yield running
    running.stop()


@pytest.fixture
def launch(server, tmp_path):
    """Run the script as the environment would, with extra variables; returns its exit code."""
    script = tmp_path / "workflow.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = script_environment(server.address, "script-1", RUNS_FILE=str(tmp_path / "runs.txt"))
    return lambda **extra: (
        subprocess.run([sys.executable, str(script)], env={**env, **extra}, timeout=60).returncode
    )


def test_a_crashed_script_resumes_without_rerunning_finished_steps(server, launch, tmp_path):
    assert launch(CRASH="1") == 3
    assert launch() == 0
    assert (tmp_path / "runs.txt").read_text().split() == ["one", "two"]
    stored = server.instance("script-1")
    assert (stored.status, json.loads(stored.output)) == (STATUS.COMPLETED, ["one", "two"])


def test_a_script_exits_to_sleep_and_is_woken_by_a_relaunch(server, launch, tmp_path):
    assert launch(NAP="0.3") == 0
    stored = server.instance("script-1")
    assert (stored.status, stored.checkpoint_id) == (STATUS.SUSPENDED, "sleep::nap")
    assert stored.sleep_until is not None
    wait_for(lambda: time.time() >= stored.sleep_until.timestamp())
    # what `runtara-core --wake-command` does for a due instance
    assert launch(NAP="0.3", RUNTARA_CHECKPOINT_ID=stored.checkpoint_id) == 0
    assert server.instance("script-1").status is STATUS.COMPLETED
    assert (tmp_path / "runs.txt").read_text().split() == ["one", "two"]
