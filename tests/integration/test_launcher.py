"""The launcher with real processes: start, recovery from SIGKILL, stop, input, limits."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from runtara import clock, records
from runtara.config import StorageConfig
from runtara.launcher import logs
from runtara.storage import selection
from tests.support import (
    ServerProcess,
    free_udp_port,
    run_cli,
    script_environment,
    sqlite_url,
    wait_for,
)

WORKFLOWS = Path(__file__).parent.parent / "workflows"
FAST = ("--restart-backoff", "50ms", "--restart-backoff-max", "200ms", "--launch-lease", "2s")


class Launching:
    """A server with a launcher over one database, and what the tests ask of it."""

    def __init__(self, folder: Path, url: str, *flags: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.url = url
        self.runs = folder / "runs"
        # One port for good: a restarted server is found where its instances wait for it.
        port = ("--port", str(free_udp_port()))
        self.flags = (*port, "--database-url", url, "--runs-dir", str(self.runs), *FAST, *flags)
        self.server = ServerProcess(*self.flags, cwd=folder)
        self.storage = selection.open_driver(StorageConfig(database_url=url), workers=2)

    def cli(self, command: str, *arguments: str) -> subprocess.CompletedProcess:
        """Run ``runtara-core command *arguments`` on this server's database, in its folder."""
        return run_cli(command, "--database-url", self.url, *arguments, cwd=self.folder)

    def restart(self, how: int = signal.SIGKILL) -> None:
        self.server.signal(how)
        self.server.wait()
        self.server = ServerProcess(*self.flags, cwd=self.folder)

    def start(self, *arguments: str, script: str = "kill_loop.py", **env: str) -> str:
        flags = [f"--env={name}={value}" for name, value in env.items()]
        started = self.cli(
            "start", *flags, *arguments, "--", sys.executable, str(WORKFLOWS / script)
        )
        assert started.returncode == 0, started.stderr
        return started.stdout.strip()

    def instance_now(self):
        return clock.utc_now()

    def instance(self, instance_id: str) -> records.Instance:
        return self.storage.run(lambda tx: tx.get_instance(instance_id), write=False)

    def finished(self, instance_id: str, timeout: float = 90.0) -> records.Instance:
        """The instance once it is finished and its launcher has seen its process end
        (until then a retry is refused: the process may still be running)."""

        def ended():
            instance = self.instance(instance_id)
            launch = self.storage.run(lambda tx: tx.get_launch(instance_id), write=False)
            released = launch is None or launch.claimed_by is None
            return instance.status.is_terminal and released and instance

        return wait_for(ended, timeout)

    def events(self, instance_id: str) -> list[records.Event]:
        events = self.storage.run(lambda tx: tx.list_events(instance_id, limit=10_000), write=False)
        return list(reversed(events))

    def attempts(self, instance_id: str) -> list[tuple[str, dict]]:
        """The launcher's events, oldest first: ("launched"|"exited", facts)."""
        return [
            (e.event_type.value, json.loads(e.payload))
            for e in self.events(instance_id)
            if e.event_type in (records.EventType.LAUNCHED, records.EventType.EXITED)
        ]

    def stop(self) -> None:
        self.server.signal(signal.SIGTERM)
        assert self.server.wait() == 0, self.server.output()
        self.storage.close()


def effects_of(path: Path) -> Counter:
    return Counter(int(line.split()[0]) for line in path.read_text().splitlines())


def kill_loop_env(folder: Path, kills: int = 20, steps: int = 30) -> dict[str, str]:
    return {
        "EFFECTS": str(folder / "effects.txt"),
        "KILLS_FILE": str(folder / "kills.txt"),
        "KILLS": str(kills),
        "STEPS": str(steps),
    }


def assert_alternating(attempts: list[tuple[str, dict]]) -> None:
    """One process at a time: every launch is followed by its exit before the next."""
    kinds = [kind for kind, _ in attempts]
    assert kinds == ["launched", "exited"] * (len(kinds) // 2) + (
        ["launched"] if len(kinds) % 2 else []
    ), kinds
    numbers = [facts["attempt"] for kind, facts in attempts if kind == "launched"]
    assert numbers == list(range(1, len(numbers) + 1)), numbers


def test_an_instance_killing_itself_20_times_completes_with_every_step_done_once(launching):
    env = kill_loop_env(launching.folder)
    instance_id = launching.start(**env)  # the default restart policy
    done = launching.finished(instance_id)
    assert done.status is records.InstanceStatus.COMPLETED, done.error
    assert int((launching.folder / "kills.txt").read_text()) == 20
    effects = effects_of(Path(env["EFFECTS"]))
    assert effects == Counter(range(30))  # every step's effect exactly once
    wait_for(lambda: launching.attempts(instance_id)[-1][0] == "exited", 10)
    attempts = launching.attempts(instance_id)
    assert_alternating(attempts)
    exits = [facts for kind, facts in attempts if kind == "exited"]
    assert len(exits) == 21
    assert [facts["signal"] for facts in exits].count(signal.SIGKILL) == 20
    assert exits[-1]["code"] == 0
    # every kill followed progress: no failure counted towards the limit
    assert {facts["failures"] for facts in exits} == {0}
    assert json.loads(done.output) == sum(n * n for n in range(30))


def test_the_input_reaches_the_instance_and_the_output_comes_back(launching):
    instance_id = launching.start(
        "--id", "with-input", "--input", '{"order": 17}', script="echo_input.py"
    )
    done = launching.finished(instance_id)
    assert done.status is records.InstanceStatus.COMPLETED, done.error
    assert json.loads(done.output) == {"got": {"order": 17}}


def test_a_command_that_cannot_start_fails_its_attempts_with_the_os_error(launching):
    started = launching.cli(
        "start",
        "--id",
        "missing",
        "--max-attempts",
        "2",
        "--",
        str(launching.folder / "no-such-program"),
    )
    assert started.returncode == 0, started.stderr
    failed = launching.finished("missing")
    assert failed.status is records.InstanceStatus.FAILED
    assert failed.error.startswith(
        "gave up after 2 failed attempts in a row without progress (2 launches in all): "
        "the last one could not start:"
    )
    assert "No such file or directory" in failed.error
    # the launcher carries on with other instances
    other = launching.start(script="echo_input.py")
    assert launching.finished(other).status is records.InstanceStatus.COMPLETED


def test_a_crash_loop_stops_at_max_failures_with_the_last_stderr(launching):
    instance_id = launching.start(
        "--max-attempts", "3", script="kill_loop.py", EFFECTS="/dev/null"
    )  # no KILLS_FILE: every attempt dies with a KeyError before registering
    failed = launching.finished(instance_id)
    assert failed.status is records.InstanceStatus.FAILED
    assert failed.error.startswith(
        "gave up after 3 failed attempts in a row without progress (3 launches in all): "
        "the last one exited with code 1"
    )
    assert "KeyError: 'KILLS_FILE'" in failed.error
    assert len([a for a in launching.attempts(instance_id) if a[0] == "exited"]) == 3
    shown = launching.cli("logs", instance_id, "--runs-dir", str(launching.runs))
    assert shown.returncode == 0 and shown.stdout.count("KeyError: 'KILLS_FILE'") == 3


def test_sleeping_four_times_then_crashing_once_completes_with_the_defaults(launching):
    instance_id = launching.start(
        script="sleepy.py", NAPS="4", CRASHED=str(launching.folder / "crashed")
    )
    done = launching.finished(instance_id, 60)
    assert done.status is records.InstanceStatus.COMPLETED, done.error
    wait_for(lambda: launching.attempts(instance_id)[-1][0] == "exited", 10)
    exits = [facts for kind, facts in launching.attempts(instance_id) if kind == "exited"]
    outcomes = [facts["outcome"] for facts in exits]
    assert outcomes == ["suspended"] * 4 + ["relaunch", "finished"], outcomes
    assert exits[4]["failures"] == 1 and exits[4]["signal"] == signal.SIGKILL


def test_a_process_that_lost_its_server_is_relaunched_not_failed(launching):
    instance_id = launching.start(
        script="loses_server_once.py", MARKER=str(launching.folder / "lost")
    )
    done = launching.finished(instance_id)
    assert done.status is records.InstanceStatus.COMPLETED, done.error
    wait_for(lambda: launching.attempts(instance_id)[-1][0] == "exited", 10)
    first = next(facts for kind, facts in launching.attempts(instance_id) if kind == "exited")
    assert first["how"] == "lost its server (exit code 75)" and first["outcome"] == "relaunch"
    # the attempt saved a checkpoint: progress, so nothing counts against its limit
    assert first["failures"] == 0


def test_retry_goes_on_from_the_checkpoints_of_a_failed_instance(launching):
    effects = launching.folder / "effects.txt"
    instance_id = launching.start(
        "--id", "flaky", script="steps.py", EFFECTS=str(effects), STEPS="5", FAIL_AT="3"
    )
    failed = launching.finished(instance_id)
    assert failed.status is records.InstanceStatus.FAILED
    assert failed.error == "RuntimeError: step 3 failed"
    retried = run_cli(
        "retry",
        "flaky",
        "--env",
        "FAIL_AT=-1",
        "--database-url",
        launching.url,
        cwd=launching.folder,
    )
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout == "flaky retried: it goes on from its checkpoint durable::step::2\n"
    done = launching.finished(instance_id)
    assert done.status is records.InstanceStatus.COMPLETED, done.error
    assert json.loads(done.output) == sum(range(5))
    assert [int(line.split()[0]) for line in effects.read_text().splitlines()] == [0, 1, 2, 3, 4]
    kinds = [event.event_type.value for event in launching.events(instance_id)]
    assert kinds.count("retried") == 1 and kinds.count("launched") == 2
    again = launching.cli("retry", "flaky")
    assert again.returncode == 1 and "is completed: only a failed or cancelled" in again.stderr
    unknown = launching.cli("retry", "nope")
    assert unknown.returncode == 1 and "'nope' not found" in unknown.stderr


def test_a_malformed_specification_fails_its_instance_and_the_others_launch(launching):
    def store(tx):
        for name, spec in (("bad-json", "{nope"), ("bad-command", '{"command": [["x"]]}')):
            tx.create_instance(name, "t", launching.instance_now())
            tx.insert_launch(
                records.Launch(name, spec, None, 3, next_launch_at=launching.instance_now())
            )

    launching.storage.run(store)
    good = launching.start(script="echo_input.py")
    assert launching.finished(good).status is records.InstanceStatus.COMPLETED
    for name, reason in (
        ("bad-json", "the launch specification is not JSON"),
        ("bad-command", "the launch specification's command must be a list of text"),
    ):
        failed = launching.finished(name)
        assert failed.status is records.InstanceStatus.FAILED
        assert failed.error.startswith(f"could not be launched: {reason}"), failed.error


def test_no_more_than_max_running_processes_at_once(tmp_path):
    launching = Launching(tmp_path, sqlite_url(tmp_path), "--max-running", "2")
    try:
        ids = [
            launching.start(
                script="steps.py", EFFECTS=str(tmp_path / f"e{n}"), STEPS="3", STEP_SECONDS="0.3"
            )
            for n in range(5)
        ]
        for instance_id in ids:
            assert launching.finished(instance_id).status is records.InstanceStatus.COMPLETED
        moments = sorted(
            (event.created_at, +1 if event.event_type is records.EventType.LAUNCHED else -1)
            for instance_id in ids
            for event in launching.events(instance_id)
            if event.event_type in (records.EventType.LAUNCHED, records.EventType.EXITED)
        )
        alive = peak = 0
        for _, change in moments:
            alive += change
            peak = max(peak, alive)
        assert peak == 2
    finally:
        launching.stop()


def test_stop_ends_an_instance_that_ignores_the_cancel_within_the_grace(launching):
    instance_id = launching.start(script="stubborn.py")
    wait_for(lambda: launching.instance(instance_id).checkpoint_id == "started", 30)
    began = time.monotonic()
    stopped = launching.cli("stop", instance_id, "--grace", "1s")
    took = time.monotonic() - began
    assert stopped.returncode == 0, stopped.stderr
    done = launching.instance(instance_id)
    assert done.status is records.InstanceStatus.CANCELLED
    assert "did not acknowledge the cancel in time" in done.error
    assert "SIGTERM" in done.error
    assert took < 1 + 5, took  # the grace, one tick, and the process's end


def test_pause_then_resume_relaunches_from_the_checkpoint(launching):
    output = launching.folder / "batch.txt"
    instance_id = launching.start(
        script="../../examples/batch_job.py",
        BATCH_ITEMS="12",
        BATCH_ITEM_SECONDS="0.2",
        BATCH_OUTPUT=str(output),
    )
    wait_for(lambda: output.exists() and len(output.read_text().splitlines()) >= 3, 30)
    paused = launching.cli("signal", instance_id, "pause")
    assert paused.returncode == 0, paused.stderr
    wait_for(lambda: launching.instance(instance_id).status is records.InstanceStatus.SUSPENDED, 30)
    wait_for(lambda: launching.attempts(instance_id)[-1][0] == "exited", 30)
    done_before = len(output.read_text().splitlines())
    assert done_before < 12
    resumed = launching.cli("signal", instance_id, "resume")
    assert resumed.returncode == 0, resumed.stderr
    assert launching.finished(instance_id).status is records.InstanceStatus.COMPLETED
    items = output.read_text().splitlines()
    assert items == [f"item {n}" for n in range(1, 13)]  # each once, none repeated
    launched = [facts for kind, facts in launching.attempts(instance_id) if kind == "launched"]
    assert len(launched) == 2
    started = [e for e in launching.events(instance_id) if e.event_type.value == "started"]
    assert started[-1].checkpoint_id is not None  # the relaunch resumed from its checkpoint


def test_a_durable_sleeper_is_woken_with_its_own_command(launching):
    instance_id = launching.start(script="../../examples/long_sleep.py", SLEEP_SECONDS="2")
    wait_for(lambda: launching.instance(instance_id).status is records.InstanceStatus.SUSPENDED, 30)
    done = launching.finished(instance_id, 60)
    assert done.status is records.InstanceStatus.COMPLETED, done.error
    launched = [facts for kind, facts in launching.attempts(instance_id) if kind == "launched"]
    assert len(launched) == 2


def test_a_duplicate_process_by_hand_is_refused_and_only_one_progresses(either):
    launching = either
    effects = launching.folder / "effects.txt"
    instance_id = launching.start(
        "--id", "dup", script="steps.py", EFFECTS=str(effects), STEPS="15", STEP_SECONDS="0.2"
    )
    wait_for(lambda: effects.exists() and len(effects.read_text().splitlines()) >= 2, 30)
    duplicate = subprocess.run(
        [sys.executable, str(WORKFLOWS / "steps.py")],
        env=script_environment(
            launching.server.address,
            instance_id,
            "default",
            EFFECTS=str(effects),
            STEPS="15",
            STEP_SECONDS="0.2",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert duplicate.returncode == 0, duplicate.stderr
    done = launching.finished(instance_id)
    assert done.status is records.InstanceStatus.COMPLETED
    exits = [facts for kind, facts in launching.attempts(instance_id) if kind == "exited"]
    assert exits and exits[-1]["code"] == 3  # the first process stopped, superseded
    assert len([1 for kind, _ in launching.attempts(instance_id) if kind == "launched"]) == 1
    lines = [line.split() for line in effects.read_text().splitlines()]
    first_pid = lines[0][1]
    takeover = next(i for i, (_, pid) in enumerate(lines) if pid != first_pid)
    assert all(pid != first_pid for _, pid in lines[takeover + 1 :])
    stderr = logs.tail(logs.log_path(launching.runs, instance_id, "stderr"), 20)
    assert "superseded" in stderr


def test_start_refuses_an_existing_id_and_oversized_input(launching):
    launching.start("--id", "taken", script="echo_input.py")
    again = launching.cli("start", "--id", "taken", "--", "true")
    assert again.returncode == 1 and "already exists" in again.stderr
    big = launching.folder / "big.bin"
    big.write_bytes(bytes(17 * 1024 * 1024))
    too_big = launching.cli("start", "--input", f"@{big}", "--", "true")
    assert too_big.returncode == 2 and "at most 16777216 (16 MiB)" in too_big.stderr
    not_json = launching.cli("start", "--input", "{nope", "--", "true")
    assert not_json.returncode == 2 and "--input is not JSON" in not_json.stderr
