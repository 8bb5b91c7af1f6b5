"""Several launchers on one database, under a seeded storm of kills, pauses and stops.

Three servers, each with its launcher, share one database (a SQLite file; a
PostgreSQL database). A few instances of tests/workflows/effects.py are
started: durable steps that append "<instance> <step> <pid>" to one effects
file, and a durable sleep that leaves the process every few steps. For a
bounded time a random driver, seeded, then

- SIGKILLs instance processes (the pid of a launch row, checked to be that
  instance's process);
- kills servers (SIGKILL or SIGTERM) and starts them again a moment later on
  the same port, so that the launcher has its name back and the instances
  find their server again;
- pauses instances and resumes them, but for one it leaves paused;
- stops one instance, giving the stop up past its grace as ``runtara-core
  stop`` does.

Then every server runs again, the paused instances are resumed (but the one),
and the run waits, bounded, for every instance to end. Checked:

- how each ended: completed; cancelled only if it was stopped (a stopped one
  may complete before it sees the cancel); the one left paused completed or
  waits, suspended with nothing due; none failed.
- one process at a time per instance: its ``launched`` and ``exited`` events
  alternate, each exit of the attempt launched before it (but for the exit of
  an attempt whose program could not start), with attempt numbers that only
  grow (none launched twice; a number claimed by a server killed before it
  started the process is never launched); every effect was made by a process
  launched for its instance, and once a process of a later attempt made an
  effect, no process of an earlier one made any.
- no effect twice but for a kill. A step's checkpoint names the process whose
  run of it counted, and that run is the step's last effect. Any other effect
  of the step is a run that never reached its checkpoint: its process died
  between the effect and the acknowledgement of the checkpoint, so it is a
  process the driver SIGKILLed (or the last one of a stopped instance, which a
  launcher terminates past the grace, or which runs on unwatched once the stop
  is given up), and each such process leaves at most one (it runs one step at
  a time, and dies once). So an instance repeats at most one effect per
  process of it killed. A step without a checkpoint (its instance was
  cancelled first) has effects of such processes only.
- failures in a row: each ``exited`` event's ``failures`` is 0 or one more
  than before (a suspended end resets it); an attempt that saved a checkpoint
  while it ran ends with 0, one that saved none with one more; none reaches
  ``max_failures``.

The CI form storms for a few seconds per driver. ``RUNTARA_KILLS_SECONDS``
(default 8) sets how long (the workflows get longer with it),
``RUNTARA_KILLS_SEED`` the seed (default: a random one; a failure names it).
A seed repeats the driver's choices, not the timing of the processes it
meets::

    RUNTARA_KILLS_SEED=1234 RUNTARA_KILLS_SECONDS=120 .venv/bin/python -m pytest -n 0 \\
        tests/reliability/test_launchers_under_kills.py
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import socket
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import attrs
import pytest

from runtara import errors, records
from runtara.admin.local import LocalAdmin
from runtara.config import StorageConfig
from runtara.launcher import processes
from runtara.launcher.spec import LaunchSpec
from runtara.records import EventType, InstanceStatus, SignalType
from runtara.sdk import step_state
from runtara.storage import selection
from tests.support import ServerProcess, sqlite_url

STORM_SECONDS = float(os.environ.get("RUNTARA_KILLS_SECONDS", "8"))
pytestmark = pytest.mark.timeout(max(240, int(STORM_SECONDS * 4) + 180))

SCRIPT = Path(__file__).parent.parent / "workflows" / "effects.py"
FAST = ("--restart-backoff", "50ms", "--restart-backoff-max", "300ms", "--launch-lease", "2s")
SERVERS = 3
INSTANCES = 4
STEPS = 16 * max(1, round(STORM_SECONDS / 8))
"""Enough work to last the storm."""
MAX_FAILURES = 50
"""Far more than a storm this long can cause in a row: no instance may fail."""
STOP_GRACE = 1.0
GIVE_UP_AFTER = 4.0
"""Past the grace: how long the driver waits before it gives a stop up."""
SETTLE_SECONDS = 90.0
"""The longest wait for the instances to end once the storm is over."""
UNCERTAIN = dt.timedelta(seconds=1)
"""How far a checkpoint's time and the end of an attempt may be told apart: the
launcher reads its clock before it records an exit."""


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """A server with its launcher, on a port of its own that it keeps across restarts."""

    def __init__(self, folder: Path, url: str, index: int) -> None:
        self.folder = folder / f"server-{index}"
        self.folder.mkdir()
        self.port = _free_udp_port()
        self.flags = (
            "--database-url",
            url,
            "--runs-dir",
            str(self.folder / "runs"),
            *FAST,
            "--port",
            str(self.port),
        )
        self.process: ServerProcess | None = None
        self.logs: list[ServerProcess] = []
        self.back_at: float | None = None
        """When the driver starts it again, after killing it."""

    @property
    def running(self) -> bool:
        return self.process is not None

    def start(self) -> None:
        self.process = ServerProcess(*self.flags, cwd=self.folder)
        self.logs.append(self.process)
        self.back_at = None

    def kill(self, number: int) -> None:
        self.process.signal(number)
        self.process.wait()
        self.process = None

    def tail(self) -> str:
        return "\n".join(line for log in self.logs for line in log.log[-15:])

    def keep_log(self) -> Path:
        """Everything the server wrote, over its restarts, in a file; its path."""
        path = self.folder / "server.log"
        path.write_text("\n".join(line for log in self.logs for line in log.log))
        return path


@attrs.define
class Instance:
    instance_id: str
    stop: bool = False
    """The driver stops it once during the storm."""
    stays_paused: bool = False
    """The driver leaves it paused at the end."""
    paused: bool = False
    stopped_at: float | None = None
    """When the stop was accepted (monotonic)."""


class Storm:
    """The servers, the instances, and the driver's record of what it did."""

    def __init__(self, folder: Path, url: str, seed: int) -> None:
        self.folder = folder
        self.rng = random.Random(seed)
        self.storage = selection.open_driver(StorageConfig(database_url=url), workers=2)
        self.storage.migrate()
        self.admin = LocalAdmin(self.storage)
        self.effects = folder / "effects.txt"
        self.servers = [Server(folder, url, index) for index in range(SERVERS)]
        self.instances = [Instance(f"i{n}") for n in range(INSTANCES)]
        roles = self.rng.sample(self.instances, 2)
        roles[0].stop, roles[1].stays_paused = True, True
        self.killed: dict[str, set[int]] = defaultdict(set)
        """The instance processes the driver SIGKILLed, by instance."""
        self.actions: Counter = Counter()

    # --- the run -------------------------------------------------------------------

    def start(self) -> None:
        for server in self.servers:
            server.start()
        env = {
            "EFFECTS": str(self.effects),
            "STEPS": str(STEPS),
            "STEP_SECONDS": "0.1",
            "NAP_EVERY": "4",
            "NAP_SECONDS": "0.3",
            "RUNTARA_SERVER_WAIT": "60000",
        }
        spec = LaunchSpec((sys.executable, str(SCRIPT)), str(self.folder), env, MAX_FAILURES)
        for instance in self.instances:
            self.admin.start_instance(instance.instance_id, "default", spec, None)

    def storm(self, seconds: float) -> None:
        began = time.monotonic()
        ends = began + seconds
        stop_at = began + self.rng.uniform(0.1, 0.9) * seconds
        while time.monotonic() < ends:
            self.restart_due_servers()
            self.give_up_stops()
            if time.monotonic() >= stop_at:
                self.stop()
            action = self.rng.choices(
                ["kill instance", "kill server", "pause", "resume", "wait"],
                weights=[5, 1, 1, 1, 2],
            )[0]
            getattr(self, action.replace(" ", "_"))()
            time.sleep(self.rng.uniform(0.05, 0.4))

    def settle(self) -> None:
        """Bring every server back, resume what may go on, and wait for the end."""
        for server in self.servers:
            if not server.running:
                server.start()
        for instance in self.instances:
            if instance.stays_paused and not instance.paused:
                self.signal(instance, SignalType.PAUSE)
            elif instance.paused and not instance.stays_paused:
                self.signal(instance, SignalType.RESUME)
        deadline = time.monotonic() + SETTLE_SECONDS
        while not self.ended():
            assert time.monotonic() < deadline, f"not ended in time: {self.describe()}"
            self.give_up_stops()
            time.sleep(0.2)

    def stop_servers(self) -> None:
        for server in self.servers:
            if server.running:
                server.kill(signal.SIGTERM)

    # --- the driver's actions --------------------------------------------------------

    def kill_instance(self) -> None:
        ids = [instance.instance_id for instance in self.instances]
        rows = self.storage.run(lambda tx: [tx.get_launch(i) for i in ids], write=False)
        running = [launch for launch in rows if launch.pid is not None and _ours(launch)]
        if not running:
            return
        launch = self.rng.choice(running)
        try:
            os.kill(launch.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        self.killed[launch.instance_id].add(launch.pid)
        self.actions["kill instance"] += 1

    def kill_server(self) -> None:
        running = [server for server in self.servers if server.running]
        if len(running) < 2:
            return  # one keeps serving, so that the storm is not only waiting
        server = self.rng.choice(running)
        how = self.rng.choice([signal.SIGKILL, signal.SIGTERM])
        server.kill(how)
        server.back_at = time.monotonic() + self.rng.uniform(0.2, 2.5)
        self.actions[f"kill server ({signal.Signals(how).name})"] += 1

    def restart_due_servers(self) -> None:
        for server in self.servers:
            if not server.running and server.back_at <= time.monotonic():
                server.start()

    def pause(self) -> None:
        instance = self.rng.choice(self.instances)
        if not instance.paused:
            self.signal(instance, SignalType.PAUSE)

    def resume(self) -> None:
        paused = [i for i in self.instances if i.paused and not i.stays_paused]
        if paused:
            self.signal(self.rng.choice(paused), SignalType.RESUME)

    def signal(self, instance: Instance, kind: SignalType) -> None:
        try:
            self.admin.send_signal(instance.instance_id, kind, b"")
        except errors.OperationRefused:
            return  # it ended
        instance.paused = kind is SignalType.PAUSE
        self.actions[kind.value] += 1

    def stop(self) -> None:
        for instance in self.instances:
            if instance.stop and instance.stopped_at is None:
                try:
                    self.admin.stop_instance(instance.instance_id, STOP_GRACE)
                except errors.OperationRefused:
                    instance.stop = False  # it ended first: it was never stopped
                    return
                instance.stopped_at = time.monotonic()
                self.actions["stop"] += 1

    def give_up_stops(self) -> None:
        for instance in self.instances:
            if (
                instance.stopped_at is not None
                and time.monotonic() > instance.stopped_at + STOP_GRACE + GIVE_UP_AFTER
            ):
                self.admin.give_up_stop(instance.instance_id, "stopped: gave up waiting")

    def wait(self) -> None:
        time.sleep(self.rng.uniform(0.2, 0.8))

    # --- what the store says -----------------------------------------------------------

    def state(self, instance_id: str) -> tuple[records.Instance, records.Launch]:
        return self.storage.run(
            lambda tx: (tx.get_instance(instance_id), tx.get_launch(instance_id)), write=False
        )

    def ended(self) -> bool:
        for instance in self.instances:
            row, launch = self.state(instance.instance_id)
            if row.status.is_terminal:
                continue
            if instance.stays_paused and _waits_paused(row, launch):
                continue
            return False
        return True

    def describe(self) -> str:
        lines = []
        for instance in self.instances:
            row, launch = self.state(instance.instance_id)
            lines.append(
                f"{instance.instance_id} {row.status.value} (error {row.error!r}), launch attempt "
                f"{launch.attempt} claimed by {launch.claimed_by} pid {launch.pid} next "
                f"{launch.next_launch_at} failures {launch.failures} stop {launch.stop_deadline}"
            )
        return "\n".join(lines)

    def events(self, instance_id: str, kind: EventType) -> list[records.Event]:
        found = self.storage.run(
            lambda tx: tx.list_events(
                instance_id, records.EventFilter(event_type=kind), limit=10_000
            ),
            write=False,
        )
        return list(reversed(found))

    def checkpoints(self, instance_id: str) -> dict[str, records.Checkpoint]:
        def read(tx):
            infos = tx.list_checkpoints(instance_id, limit=10_000)
            return {i.checkpoint_id: tx.get_checkpoint(instance_id, i.checkpoint_id) for i in infos}

        return self.storage.run(read, write=False)

    # --- the checks --------------------------------------------------------------------

    def check(self) -> None:
        effects = defaultdict(list)
        for line in self.effects.read_text().splitlines():
            instance_id, step, pid = line.split()
            effects[instance_id].append((int(step), int(pid)))
        for instance in self.instances:
            self.check_ending(instance)
            self.check_one_at_a_time(instance.instance_id, effects[instance.instance_id])
            self.check_effects(instance.instance_id, effects[instance.instance_id])
            self.check_failures(instance.instance_id)

    def check_ending(self, instance: Instance) -> None:
        row, launch = self.state(instance.instance_id)
        status = row.status
        assert status is not InstanceStatus.FAILED, f"{instance.instance_id} failed: {row.error}"
        if status is InstanceStatus.CANCELLED:
            assert instance.stopped_at is not None, f"{instance.instance_id} cancelled unstopped"
        elif not (instance.stays_paused and _waits_paused(row, launch)):
            assert status is InstanceStatus.COMPLETED, f"{instance.instance_id} {status.value}"

    def check_one_at_a_time(self, instance_id: str, made: list[tuple[int, int]]) -> None:
        events = [
            (event.event_type, json.loads(event.payload))
            for event in self.events(instance_id, None)
            if event.event_type in (EventType.LAUNCHED, EventType.EXITED)
        ]
        seen = [(kind.value, facts["attempt"]) for kind, facts in events]
        running, last = None, 0
        for kind, facts in events:
            attempt = facts["attempt"]
            if kind is EventType.LAUNCHED:
                assert running is None and attempt > last, f"{instance_id}: overlap in {seen}"
                running = last = attempt
            elif running is not None:
                assert attempt == running, f"{instance_id}: overlap in {seen}"
                running = None
            else:  # an attempt without a process: its program could not start
                assert facts["how"].startswith("could not start"), f"{instance_id}: {seen}"
                assert attempt > last, f"{instance_id}: attempts go back in {seen}"
                last = attempt
        attempt_of = {
            facts["pid"]: facts["attempt"] for kind, facts in events if kind is EventType.LAUNCHED
        }
        latest = 0
        for step, pid in made:
            assert pid in attempt_of, f"{instance_id}: step {step} run by pid {pid}, never launched"
            assert attempt_of[pid] >= latest, (
                f"{instance_id}: step {step} run by attempt {attempt_of[pid]} after attempt "
                f"{latest} made effects"
            )
            latest = attempt_of[pid]

    def check_effects(self, instance_id: str, made: list[tuple[int, int]]) -> None:
        stored = self.checkpoints(instance_id)
        killed = self.killed[instance_id] | self.ended_by_stop(instance_id)
        by_step = defaultdict(list)
        for step, pid in made:
            by_step[step].append(pid)
        unacknowledged: Counter = Counter()
        for step, pids in sorted(by_step.items()):
            key = f"durable::step::{step}"
            counted = None
            if key in stored:
                counted = step_state.decode(key, stored[key].state).result
                assert pids[-1] == counted, (
                    f"{instance_id}: step {step} counted the run of {counted}, but its effects "
                    f"were made by {pids}"
                )
            lost_runs = pids[:-1] if counted is not None else pids
            for pid in lost_runs:
                assert pid in killed, (
                    f"{instance_id}: step {step} had effects by {pids}; {pid} never reached its "
                    f"checkpoint, yet was not killed (killed: {sorted(killed)})"
                )
                unacknowledged[pid] += 1
        twice = {pid: n for pid, n in unacknowledged.items() if n > 1}
        assert not twice, f"{instance_id}: processes left more than one lost run: {twice}"
        repeats = sum(len(pids) - 1 for pids in by_step.values())
        self.actions["effects repeated after a kill"] += repeats
        assert repeats <= len(killed), (instance_id, repeats, sorted(killed))

    def ended_by_stop(self, instance_id: str) -> set[int]:
        """The process of a cancelled instance's last attempt: a launcher terminates it
        past the stop's grace, or it runs on unwatched once the stop is given up."""
        row, _ = self.state(instance_id)
        launched = self.events(instance_id, EventType.LAUNCHED)
        if row.status is not InstanceStatus.CANCELLED or not launched:
            return set()
        return {json.loads(launched[-1].payload)["pid"]}

    def check_failures(self, instance_id: str) -> None:
        launched = {
            json.loads(e.payload)["attempt"]: e.created_at
            for e in self.events(instance_id, EventType.LAUNCHED)
        }
        saved = sorted(c.created_at for c in self.checkpoints(instance_id).values())
        before = 0
        previous_end = None
        for event in self.events(instance_id, EventType.EXITED):
            facts = json.loads(event.payload)
            ended = event.created_at
            began = launched.get(facts["attempt"], ended)  # none: it could not start
            outcome, failures = facts["outcome"], facts["failures"]
            assert facts["max_failures"] == MAX_FAILURES and failures < MAX_FAILURES
            what = f"{instance_id} attempt {facts['attempt']} ({facts['how']}): {outcome}"
            if outcome in ("relaunch", "failed"):
                surely = any(began <= at <= ended - UNCERTAIN for at in saved)
                maybe = any(
                    (previous_end is None or previous_end <= at) and at <= ended + UNCERTAIN
                    for at in saved
                )
                if failures == 0:
                    assert maybe, f"{what} with no checkpoint saved, yet 0 failures in a row"
                else:
                    assert failures == before + 1, f"{what}: {failures} after {before} in a row"
                    assert not surely, f"{what} after saving a checkpoint: {failures} in a row"
                before = failures
            else:
                assert failures == 0, f"{what} counted {failures} failures"
                if outcome == "suspended":
                    before = 0
            previous_end = ended


def _ours(launch: records.Launch) -> bool:
    """Whether the pid of ``launch`` is still its instance's process (not a reused pid)."""
    if not processes.alive(launch.pid, launch.pid_started):
        return False
    try:
        environment = Path(f"/proc/{launch.pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"RUNTARA_INSTANCE_ID={launch.instance_id}".encode() in environment


def _kill_leftovers(effects: Path) -> None:
    """Kill the instance processes of this run still alive (after a failure, say)."""
    mark = f"EFFECTS={effects}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if mark in (entry / "environ").read_bytes().split(b"\0"):
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


def _waits_paused(row: records.Instance, launch: records.Launch) -> bool:
    return (
        row.status is InstanceStatus.SUSPENDED
        and row.sleep_until is None
        and launch.claimed_by is None
        and launch.next_launch_at is None
    )


def _run(folder: Path, url: str) -> None:
    seed = int(os.environ.get("RUNTARA_KILLS_SEED") or random.randrange(1_000_000))
    storm = Storm(folder, url, seed)
    try:
        storm.start()
        storm.storm(STORM_SECONDS)
        storm.settle()
        storm.stop_servers()
        storm.check()
    except BaseException as failure:
        failure.add_note(
            f"seed {seed}: repeat with RUNTARA_KILLS_SEED={seed} "
            f"RUNTARA_KILLS_SECONDS={STORM_SECONDS:g}; the driver did {dict(storm.actions)}\n"
            + "\n".join(
                f"server {n} (all its log: {s.keep_log()}):\n{s.tail()}"
                for n, s in enumerate(storm.servers)
            )
        )
        raise
    finally:
        for server in storm.servers:
            if server.running:
                server.kill(signal.SIGKILL)
        storm.storage.close()
        _kill_leftovers(storm.effects)
    print(f"seed {seed}: {dict(storm.actions)}")


def test_three_launchers_on_one_sqlite_file_under_kills(tmp_path):
    _run(tmp_path, sqlite_url(tmp_path))


def test_three_launchers_on_one_postgres_database_under_kills(tmp_path, postgres_url):
    _run(tmp_path, postgres_url)
