"""Work that was started finishes: through kills of its process and of the server."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

from runtara import records
from tests.integration.test_launcher import (
    Launching,
    assert_alternating,
    effects_of,
    kill_loop_env,
)
from tests.support import wait_for


def kills(folder: Path) -> int:
    path = folder / "kills.txt"
    text = path.read_text() if path.exists() else ""
    return int(text) if text.strip() else 0  # the script may be writing it


def test_the_run_survives_its_20_kills_and_two_killed_servers(tmp_path, database_url):
    launching = Launching(tmp_path, database_url)
    try:
        env = kill_loop_env(tmp_path)
        instance_id = launching.start(**env)  # the default restart policy
        for enough in (6, 13):
            wait_for(lambda enough=enough: kills(tmp_path) >= enough, 60)
            launching.restart(signal.SIGKILL)
        done = launching.finished(instance_id, 120)
        assert done.status is records.InstanceStatus.COMPLETED, done.error
        assert kills(tmp_path) == 20
        effects = effects_of(Path(env["EFFECTS"]))
        assert set(effects) == set(range(30))
        # a server's death between a step's effect and its checkpoint's
        # acknowledgement makes the SDK wait and repeat the checkpoint, not the step
        assert effects == Counter(range(30)), effects
        wait_for(lambda: launching.attempts(instance_id)[-1][0] == "exited", 30)
        assert_alternating(launching.attempts(instance_id))
    finally:
        launching.stop()


def test_two_servers_on_one_database_launch_each_instance_once_at_a_time(tmp_path, postgres_url):
    first = Launching(tmp_path / "a", postgres_url)
    second = Launching(tmp_path / "b", postgres_url)
    try:
        ids = []
        for n in range(3):
            folder = tmp_path / f"run-{n}"
            folder.mkdir()
            ids.append(
                (folder, first.start("--max-attempts", "10", **kill_loop_env(folder, 6, 10)))
            )
        for folder, instance_id in ids:
            done = first.finished(instance_id, 120)
            assert done.status is records.InstanceStatus.COMPLETED, done.error
            assert effects_of(folder / "effects.txt") == Counter(range(10))
            wait_for(lambda i=instance_id: first.attempts(i)[-1][0] == "exited", 30)
            assert_alternating(first.attempts(instance_id))
    finally:
        first.stop()
        second.stop()
