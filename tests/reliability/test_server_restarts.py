"""A server restart is invisible to the workflows it runs: stopped for seconds or
killed, the restarted server adopts their processes, which wait for it and go
on; no attempt is spent and no step runs twice."""

from __future__ import annotations

import signal
import time
from collections import Counter

from runtara import records
from tests.integration.test_launcher import Launching
from tests.support import ServerProcess, sqlite_url, wait_for

WORKFLOWS = 6
STEPS = 40


def test_six_workflows_run_through_a_stopped_and_a_killed_server(tmp_path):
    launching = Launching(tmp_path, sqlite_url(tmp_path))
    try:
        ids = [
            launching.start(
                "--id",
                f"wf-{n}",
                script="steps.py",
                EFFECTS=str(tmp_path / f"effects-{n}.txt"),
                STEPS=str(STEPS),
                STEP_SECONDS="0.1",
            )
            for n in range(WORKFLOWS)
        ]

        def steps_done() -> int:
            return min(
                len(path.read_text().splitlines()) if path.exists() else 0
                for path in (tmp_path / f"effects-{n}.txt" for n in range(WORKFLOWS))
            )

        wait_for(lambda: steps_done() >= 5, 60)
        launching.server.signal(signal.SIGTERM)
        assert launching.server.wait() == 0
        time.sleep(5)  # the workflows wait for their server
        launching.server = ServerProcess(*launching.flags, cwd=launching.folder)
        progressed = steps_done()
        wait_for(lambda: steps_done() >= progressed + 5, 60)
        launching.restart(signal.SIGKILL)
        for instance_id in ids:
            done = launching.finished(instance_id, 120)
            assert done.status is records.InstanceStatus.COMPLETED, done.error
        for n, instance_id in enumerate(ids):
            effects = (tmp_path / f"effects-{n}.txt").read_text().splitlines()
            steps = Counter(int(line.split()[0]) for line in effects)
            assert steps == Counter(range(STEPS)), (instance_id, steps)  # each step once
            assert len({line.split()[1] for line in effects}) == 1  # one process all along
            wait_for(lambda i=instance_id: launching.attempts(i)[-1][0] == "exited", 30)
            kinds = [kind for kind, _ in launching.attempts(instance_id)]
            assert kinds == ["launched", "exited"], (instance_id, kinds)  # no attempt spent
        adopted = [line for line in launching.server.log if "watching its running process" in line]
        assert len(adopted) >= 1
    finally:
        launching.stop()


def test_two_servers_on_one_database_each_killed_once_lose_no_step(tmp_path, postgres_url):
    servers = [Launching(tmp_path / name, postgres_url) for name in ("a", "b")]
    count = 12
    effects = [tmp_path / f"effects-{n}.txt" for n in range(count)]
    try:
        ids = [
            servers[n % 2].start(
                "--id",
                f"wf-{n}",
                script="steps.py",
                EFFECTS=str(effects[n]),
                STEPS=str(STEPS),
                STEP_SECONDS="0.1",
            )
            for n in range(count)
        ]

        def steps_done() -> int:
            return min(len(p.read_text().splitlines()) if p.exists() else 0 for p in effects)

        for server in servers:
            progressed = steps_done()
            wait_for(lambda progressed=progressed: steps_done() >= progressed + 3, 60)
            server.restart(signal.SIGKILL)
        for instance_id in ids:
            done = servers[0].finished(instance_id, 120)
            assert done.status is records.InstanceStatus.COMPLETED, done.error
        for instance_id, path in zip(ids, effects, strict=True):
            steps = Counter(int(line.split()[0]) for line in path.read_text().splitlines())
            assert steps == Counter(range(STEPS)), (instance_id, steps)
            wait_for(lambda i=instance_id: servers[0].attempts(i)[-1][0] == "exited", 30)
            kinds = [kind for kind, _ in servers[0].attempts(instance_id)]
            assert kinds == ["launched", "exited"], (instance_id, kinds)
    finally:
        for server in servers:
            server.stop()
