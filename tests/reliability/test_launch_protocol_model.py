"""The launch protocol under random interleavings, checked against a model.

A hypothesis state machine plays several launchers, operators and instance
processes over one real store (a SQLite file; a PostgreSQL database), calling
the transitions of :mod:`runtara.storage.launches` directly with a manual
clock, and the instance protocol through the driver's operation methods.

- Launchers claim due launches, start them (or fail to: a program that cannot
  start, a malformed specification), renew their claims, record how their
  processes ended, die (their memory is lost and their claims lapse as the
  clock passes the lease) and come back under their name, and look after the
  launches nobody holds as the launcher does: a live process on their own host
  is adopted, a gone one is relaunched, a remote one is relaunched once it is
  silent (while it may still be alive: a zombie that the registration fencing
  must hold back), a claim without a process is released, a due sleeper woken.
- Processes register, save new checkpoints (progress), sleep leaving the
  process, complete, fail, obey a cancel or a pause as the SDK does, or are
  killed, at any moment.
- Operators pause, resume, stop, give up a stop, and retry, and change the
  concurrency limit of the instances' queue.

The model knows what each process did, so it knows what each transition must
return and write. Checked after every step:

- a transition that succeeded moved the launch exactly as the state table of
  launches.py says, and one that did not changed nothing it should not;
- how an attempt ended (the outcome ``exited`` returns and records) follows
  from what its process did: finished, suspended by its own registered
  process, stopped, taken over, else a failure; ``failures`` counts exactly the
  failed attempts in a row since the last progress or non-failure end, and
  ``max_failures`` of them fail the instance (then ``failures`` equals it,
  unless the SDK, the specification or an operator failed it);
- at most one launcher believes it holds a launch with a claim in force, and
  the launch is then held as it believes; attempt numbers never go down; no
  two ``launched`` events share an attempt number; a claimed launch is not due;
  a claim takes the earliest due live launches as far as the queue's
  concurrency leaves room, and never makes more claimed than it allows;
- at a quiescent point (every process killed, every launcher back and done
  looking after what lapsed, the clock past every back-off) every live
  instance is waiting for a resume, and every finished one is not due and
  nobody holds it (its end recorded even if its launcher died before it saw
  the process end), and a failed or cancelled one can be retried.

A CI run is a few seconds per driver. ``RUNTARA_LAUNCH_MODEL_EXAMPLES=N`` runs
N examples per driver instead (and lifts the test timeout)::

    RUNTARA_LAUNCH_MODEL_EXAMPLES=2000 .venv/bin/python -m pytest -n 0 \\
        tests/reliability/test_launch_protocol_model.py
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import uuid

import attrs
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from runtara import errors, records
from runtara.config import StorageConfig
from runtara.records import EventType, InstanceStatus, LaunchHolder, SignalType
from runtara.storage import base, launches, operations, queues, selection
from tests.support import sqlite_url

EXAMPLES_VARIABLE = "RUNTARA_LAUNCH_MODEL_EXAMPLES"
LONG_RUN = bool(os.environ.get(EXAMPLES_VARIABLE))
pytestmark = pytest.mark.timeout(0 if LONG_RUN else 120)

T0 = dt.datetime(2031, 1, 1, tzinfo=dt.timezone.utc)
LEASE = dt.timedelta(seconds=10)
WAKE_GRACE = dt.timedelta(seconds=2)
BACKOFF = launches.Backoff(first=1.0, longest=8.0)
"""No jitter: the model knows every relaunch time."""
QUIET = LEASE + WAKE_GRACE + dt.timedelta(seconds=BACKOFF.longest + 1)
"""A clock step past every claim, wake grace and back-off."""
LAUNCHERS = {"L0": "host-a", "L1": "host-a", "L2": "host-b"}
"""Launcher names and their hosts: two share one, so they can adopt each other's
processes; the third sees those only as remote."""
INSTANCES = 3
SETTLE_AFTER = 12
"""Steps between two quiescent points."""
TENANT = "tenant"
STARTS = ["run"] * 5 + ["cannot start"] * 2 + ["malformed", "not yet", "unrecorded"]
"""How a claimed launch is started: its process runs, its program cannot start, its
specification is malformed, not yet (the launcher dies before it starts it), or
unrecorded (the launcher dies after it started the process, before it recorded it)."""
CONCURRENCY = st.sampled_from([None, None, 1, 2])
ELAPSE = st.sampled_from([0, 0, 0.25, 1, 3, 11, 40]).map(lambda s: dt.timedelta(seconds=s))
"""How far the clock moves before a step."""
ACTIONS = ["checkpoint"] * 4 + ["poll", "sleep", "complete", "fail", "crash", "crash"]
ACTIONS += ["register again"]
"""What a registered process does next (crash: it is killed; register again: as
the SDK does when the reply to a sleep was lost, naming its registration)."""
POLICY_OUTCOMES = frozenset({launches.Outcome.RELAUNCH, launches.Outcome.FAILED})


class WhatIf(Exception):
    """Raised inside a transaction to undo what it did."""


# --- the model ---------------------------------------------------------------------


@attrs.define
class Process:
    pid: int
    instance_id: str
    host: str
    registration: int | None = None
    alive: bool = True


@attrs.define
class Watch:
    """What a launcher remembers of a launch it holds."""

    holder: LaunchHolder
    until: dt.datetime
    """When it believes its claim runs out."""
    pid: int | None = None
    """None: claimed, no process started yet."""


@attrs.define
class Launcher:
    name: str
    host: str
    alive: bool = True
    watched: dict[str, Watch] = attrs.Factory(dict)


@attrs.define
class Expected:
    """What the model knows of one instance."""

    max_failures: int
    failures: int = 0
    checkpoints: int = 0
    """New checkpoints saved so far (each one is progress)."""
    at_claim: int = 0
    """``checkpoints`` when the current attempt was claimed."""
    registration_at_claim: int = 0
    attempt_pid: int | None = None
    """The process the store recorded for the current attempt."""
    registered: list[tuple[int, int]] = attrs.Factory(list)
    """Every registration as (number, pid), in order."""
    failed_by: str | None = None
    """Who failed the instance: "policy", "sdk" or "spec"."""
    stop_requested: bool = False


@attrs.frozen
class Snapshot:
    instance: records.Instance
    launch: records.Launch
    pending: records.Signal | None
    launched: list[dict]
    exited: list[dict]


def _snapshot(tx: base.Transaction, instance_id: str) -> Snapshot:
    return Snapshot(
        tx.get_instance(instance_id),
        tx.get_launch(instance_id),
        tx.get_pending_signal(instance_id),
        _facts(tx, instance_id, EventType.LAUNCHED),
        _facts(tx, instance_id, EventType.EXITED),
    )


def _facts(tx: base.Transaction, instance_id: str, kind: EventType) -> list[dict]:
    events = tx.list_events(instance_id, records.EventFilter(event_type=kind), limit=10_000)
    return [json.loads(event.payload) for event in reversed(events)]


class LaunchProtocol(RuleBasedStateMachine):
    """One example: a few instances of one store, launched by three launchers."""

    storage: base.StorageDriver

    def __init__(self) -> None:
        super().__init__()
        self.prefix = uuid.uuid4().hex[:8]
        self.now = T0
        self.launchers = {name: Launcher(name, host) for name, host in LAUNCHERS.items()}
        self.processes: dict[int, Process] = {}
        self.expected: dict[str, Expected] = {}
        self.highest_attempt: dict[str, int] = {}
        self.next_pid = 1000
        self.steps = 0

    def teardown(self) -> None:
        ids = list(self.expected)
        self.storage.run(lambda tx: [tx.delete_instance(i) for i in ids])

    # --- reading the store ---------------------------------------------------------

    def snapshot(self, instance_id: str) -> Snapshot:
        return self.storage.run(lambda tx: _snapshot(tx, instance_id), write=False)

    def snapshots(self) -> dict[str, Snapshot]:
        ids = list(self.expected)
        return self.storage.run(lambda tx: {i: _snapshot(tx, i) for i in ids}, write=False)

    def instance_id(self, index: int) -> str:
        ids = list(self.expected)
        return ids[index % len(ids)]

    def pick(self, which: int, fits) -> Launcher:
        """The ``which``-th launcher (round the list) of those that ``fits``."""
        fitting = [launcher for launcher in self.launchers.values() if fits(launcher)]
        return fitting[which % len(fitting)]

    def alive(self) -> bool:
        return any(launcher.alive for launcher in self.launchers.values())

    def ended(self, launcher: Launcher) -> list[str]:
        if not launcher.alive:
            return []
        return [
            i
            for i, w in launcher.watched.items()
            if w.pid is not None and not self.processes[w.pid].alive
        ]

    # --- operators -----------------------------------------------------------------

    @initialize(
        limits=st.lists(st.integers(1, 3), min_size=1, max_size=INSTANCES),
        concurrency=CONCURRENCY,
    )
    def start(self, limits, concurrency):
        self.queue = f"queue-{self.prefix}"
        self.set_concurrency(concurrency)
        for index, max_failures in enumerate(limits):
            self.start_one(f"{self.prefix}-{index}", max_failures)

    @rule(concurrency=CONCURRENCY)
    def set_concurrency(self, concurrency):
        """An operator changes the queue's limit (running instances are untouched)."""
        name = self.queue
        self.storage.run(lambda tx: queues.set_queue(tx, name, concurrency=concurrency))
        self.concurrency = concurrency

    def start_one(self, instance_id: str, max_failures: int) -> None:
        now = self.now
        self.storage.run(
            lambda tx: launches.start_instance(
                tx,
                instance_id,
                TENANT,
                '{"command": ["true"]}',
                None,
                max_failures,
                now,
                queue=self.queue,
            )
        )
        self.expected[instance_id] = Expected(max_failures)
        self.highest_attempt[instance_id] = 0
        after = self.snapshot(instance_id)
        assert after.instance.status is InstanceStatus.PENDING
        assert after.launch.next_launch_at == now and after.launch.claimed_by is None

    @rule(
        index=st.integers(0, INSTANCES - 1),
        action=st.sampled_from(["pause", "resume", "resume", "stop", "give up", "retry"]),
        grace=st.sampled_from([1, 30]),
        elapse=ELAPSE,
    )
    def operate(self, index, action, grace, elapse):
        """An operator's command."""
        self.now += elapse
        instance_id = self.instance_id(index)
        if action in ("pause", "resume"):
            self.send_signal(instance_id, SignalType(action))
        elif action == "stop":
            self.stop(instance_id, grace)
        elif action == "give up":
            self.give_up_stop(instance_id)
        else:
            self.retry(instance_id)

    def send_signal(self, instance_id: str, kind: SignalType) -> None:
        before = self.snapshot(instance_id)
        now = self.now
        try:
            self.storage.run(lambda tx: operations.send_signal(tx, instance_id, kind, b"", now))
        except errors.OperationRefused:
            assert before.instance.status.is_terminal
            return
        assert not before.instance.status.is_terminal
        after = self.snapshot(instance_id)
        wakes = (
            kind is SignalType.RESUME
            and before.instance.status is InstanceStatus.SUSPENDED
            and before.launch.claimed_by is None
        )
        _moved(before.launch, after.launch, **({"next_launch_at": now} if wakes else {}))

    def stop(self, instance_id: str, grace: int) -> None:
        before = self.snapshot(instance_id)
        now = self.now
        deadline = now + dt.timedelta(seconds=grace)
        try:
            self.storage.run(
                lambda tx: launches.request_stop(tx, instance_id, dt.timedelta(seconds=grace), now)
            )
        except errors.OperationRefused:
            assert before.instance.status.is_terminal
            return
        assert not before.instance.status.is_terminal
        self.expected[instance_id].stop_requested = True
        after = self.snapshot(instance_id)
        _moved(before.launch, after.launch, stop_deadline=deadline, next_launch_at=None)
        assert after.pending.signal_type is SignalType.CANCEL
        # Nothing runs it: nobody holds it and no process of an attempt is
        # unaccounted for (an unwatched running instance may have one).
        nothing_runs_it = before.launch.claimed_by is None and (
            before.instance.status is not InstanceStatus.RUNNING
            or before.launch.next_launch_at is not None
        )
        if nothing_runs_it:
            assert after.instance.status is InstanceStatus.CANCELLED, (
                f"a stop of {before.instance.status.value} instance whose launch "
                f"{_state(before)} left it {after.instance.status.value}"
            )
        else:
            assert after.instance.status is before.instance.status

    def give_up_stop(self, instance_id: str) -> None:
        """What ``stop`` does once the grace and its margin ran out."""
        if not self.expected[instance_id].stop_requested:
            return
        before = self.snapshot(instance_id)
        now = self.now
        done = self.storage.run(
            lambda tx: launches.cancel_unanswered(tx, instance_id, "gave up", now)
        )
        assert done == (not before.instance.status.is_terminal)
        after = self.snapshot(instance_id)
        if done:
            assert after.instance.status is InstanceStatus.CANCELLED
            launch = before.launch
            if launch.claimed_by is not None and launch.claimed_until > now:
                _moved(launch, after.launch, next_launch_at=None)  # its launcher ends it
            else:
                released = dict(claimed_by=None, claimed_until=None, pid=None, pid_started=None)
                _moved(launch, after.launch, next_launch_at=None, host=None, **released)

    def retry(self, instance_id: str) -> None:
        before = self.snapshot(instance_id)
        now = self.now
        try:
            self.storage.run(lambda tx: launches.retry(tx, instance_id, now))
        except errors.OperationRefused:
            assert not _retryable(before, now), "a retry was refused"
            return
        assert _retryable(before, now)
        expected = self.expected[instance_id]
        expected.failures, expected.failed_by, expected.stop_requested = 0, None, False
        after = self.snapshot(instance_id)
        assert after.instance.status is InstanceStatus.PENDING
        assert after.launch.next_launch_at == now and after.launch.claimed_by is None
        assert after.launch.stop_deadline is None and after.pending is None
        assert after.launch.attempt == before.launch.attempt

    # --- launchers -----------------------------------------------------------------

    @precondition(lambda self: self.alive())
    @rule(
        which=st.integers(0, 2),
        silent=st.booleans(),
        limit=st.integers(1, 3),
        starts=st.lists(st.sampled_from(STARTS), min_size=1, max_size=3),
        elapse=ELAPSE,
    )
    def tick(self, which, silent, limit, starts, elapse):
        """A launcher's tick (see Launcher.tick): record how its processes ended, renew
        its claims, look after the launches nobody holds, claim the due ones and
        start each as ``starts`` says (round the list)."""
        self.now += elapse
        launcher = self.pick(which, lambda launcher: launcher.alive)
        for instance_id in self.ended(launcher):
            self.record_exit(launcher, instance_id, "killed by SIGKILL", None, signal.SIGKILL)
        self.renew_by(launcher)
        self.look_after_lapsed_by(launcher, silent)
        for n, instance_id in enumerate(self.claim_by(launcher, limit)):
            start = starts[n % len(starts)]
            if start == "not yet":
                self.die(launcher)
            else:
                self.spawn_by(launcher, instance_id, start)
            if not launcher.alive:
                return

    def claim_by(self, launcher: Launcher, limit: int) -> list[str]:
        name, now = launcher.name, self.now
        before = self.snapshots()
        due = sorted(
            (s.launch.next_launch_at, i)
            for i, s in before.items()
            if s.launch.next_launch_at is not None
            and s.launch.next_launch_at <= now
            and (s.launch.claimed_until is None or s.launch.claimed_until <= now)
        )
        held = sum(1 for s in before.values() if s.launch.claimed_by is not None)
        room = limit if self.concurrency is None else min(limit, self.concurrency - held)
        live = [i for _, i in due if not before[i].instance.status.is_terminal]
        claimed = self.storage.run(lambda tx: launches.claim(tx, name, now, LEASE, limit))
        got = {launch.instance_id: launch for launch, _ in claimed}
        assert set(got) == set(live[: max(0, room)]), (
            f"claimed {sorted(got)} of the due {due} with room for {room}"
        )
        now_seen = self.snapshots()
        if self.concurrency is not None and got:
            claimed_now = sum(1 for s in now_seen.values() if s.launch.claimed_by is not None)
            assert claimed_now <= self.concurrency
        for position, (_, instance_id) in enumerate(due):
            old, after = before[instance_id], now_seen[instance_id]
            if instance_id not in got and position >= limit:
                continue  # past the first pass: a finished one may have been released
            if instance_id not in got:
                if room <= 0:  # a full queue: not even a finished one's launch is looked at
                    assert after.launch == old.launch
                elif old.instance.status.is_terminal:  # a finished instance's due launch
                    assert after.launch.claimed_by is None and after.launch.next_launch_at is None
                else:  # the queue filled up before its turn
                    assert after.launch == old.launch
                continue
            assert after.launch.holder == LaunchHolder(name, old.launch.attempt + 1)
            assert got[instance_id].holder == after.launch.holder
            assert after.launch.claimed_until == now + LEASE
            assert after.launch.next_launch_at is None and after.launch.pid is None
            assert after.launch.resumed_from == old.instance.checkpoint_id
            assert after.launch.failures == old.launch.failures
            expected = self.expected[instance_id]
            expected.at_claim = expected.checkpoints
            expected.registration_at_claim = old.instance.registration
            expected.attempt_pid = None
            launcher.watched[instance_id] = Watch(after.launch.holder, now + LEASE)
        return [launch.instance_id for launch, _ in claimed]

    def spawn_by(self, launcher: Launcher, instance_id: str, how: str) -> None:
        watch = launcher.watched[instance_id]
        before = self.snapshot(instance_id)
        holds = before.launch.holder == watch.holder
        now = self.now
        if how == "cannot start":
            self.record_exit(launcher, instance_id, "could not start: no such file", None, None)
            return
        if how == "malformed":
            failed = self.storage.run(
                lambda tx: launches.fail_unlaunchable(
                    tx, instance_id, watch.holder, "not JSON", now
                )
            )
            del launcher.watched[instance_id]
            assert failed == (holds and not before.instance.status.is_terminal)
            after = self.snapshot(instance_id)
            if failed:
                self.expected[instance_id].failed_by = "spec"
                assert after.instance.status is InstanceStatus.FAILED
                assert after.launch.claimed_by is None and after.launch.next_launch_at is None
            else:
                assert after.launch == before.launch
            return
        pid = self.next_pid
        self.next_pid += 1
        self.processes[pid] = Process(pid, instance_id, launcher.host)
        if how == "unrecorded":
            self.die(launcher)
            return
        watch.pid = pid  # started: watched whatever the store says (as the launcher does)
        recorded = self.storage.run(
            lambda tx: launches.launched(
                tx, instance_id, watch.holder, pid, None, launcher.host, now
            )
        )
        assert recorded == holds
        after = self.snapshot(instance_id)
        if not recorded:
            assert after.launch == before.launch and after.launched == before.launched
            return
        expected = self.expected[instance_id]
        expected.attempt_pid = pid
        _moved(before.launch, after.launch, pid=pid, host=launcher.host, launched_at=now)
        assert after.launched[len(before.launched) :] == [
            {
                "attempt": watch.holder.attempt,
                "pid": pid,
                "host": launcher.host,
                "launcher": watch.holder.claimed_by,
                "failures": expected.failures,
            }
        ]

    def renew_by(self, launcher: Launcher) -> None:
        now = self.now
        for instance_id, watch in list(launcher.watched.items()):
            before = self.snapshot(instance_id)
            kept = self.storage.run(
                lambda tx, i=instance_id, w=watch: launches.renew(tx, i, w.holder, now + LEASE)
            )
            assert kept == (before.launch.holder == watch.holder)
            after = self.snapshot(instance_id)
            if kept:
                watch.until = now + LEASE
                _moved(before.launch, after.launch, claimed_until=now + LEASE)
            else:
                del launcher.watched[instance_id]
                assert after.launch == before.launch

    @rule(which=st.integers(0, 2), elapse=ELAPSE)
    def server_dies_or_comes_back(self, which, elapse):
        """A launcher's server dies (its memory is lost, its processes run on), or a
        dead one comes back under its name."""
        self.now += elapse
        launcher = list(self.launchers.values())[which]
        if launcher.alive:
            self.die(launcher)
        else:
            self.come_back_as(launcher)

    def die(self, launcher: Launcher) -> None:
        launcher.alive = False
        launcher.watched.clear()

    def come_back_as(self, launcher: Launcher) -> None:
        """A restarted server's launcher, under its name, finds its own launches."""
        name = launcher.name
        launcher.alive = True
        held = self.storage.run(lambda tx: launches.held_by(tx, name, 1000), write=False)
        for launch in held:
            if launch.instance_id in self.expected:
                self.look_after(launcher, launch, silent=False)

    def look_after_lapsed_by(self, launcher: Launcher, silent: bool) -> None:
        now = self.now
        found = self.storage.run(
            lambda tx: launches.lapsed(tx, now, now - WAKE_GRACE, 100), write=False
        )
        for launch in found:
            if launch.instance_id in self.expected and launch.instance_id not in launcher.watched:
                self.look_after(launcher, launch, silent)

    def look_after(self, launcher: Launcher, seen: records.Launch, silent: bool) -> None:
        """The launcher's rules for a launch nobody watches (see Launcher._look_after);
        ``silent``: a remote process has been silent long enough to be given up."""
        instance_id, now = seen.instance_id, self.now
        before = self.snapshot(instance_id)
        finished = before.instance.status.is_terminal
        if seen.claimed_by is None and before.instance.status is InstanceStatus.SUSPENDED:
            woken = self.storage.run(
                lambda tx: launches.wake_unwatched(
                    tx, instance_id, seen.holder, now, now - WAKE_GRACE
                )
            )
            due = before.instance.sleep_until is not None and (
                before.instance.sleep_until <= now - WAKE_GRACE
            )
            assert woken == (due and before.launch.holder == seen.holder)
            changes = {"next_launch_at": now} if woken else {}
            _moved(before.launch, self.snapshot(instance_id).launch, **changes)
            return
        if seen.claimed_by is not None and seen.pid is None:
            if seen.claimed_until is not None and seen.claimed_until > now:
                return  # its process may yet register: the claim runs out first
            released = self.storage.run(
                lambda tx: launches.release_unstarted(tx, instance_id, seen.holder, now)
            )
            assert released == (before.launch.holder == seen.holder and before.launch.pid is None)
            after = self.snapshot(instance_id)
            if released:
                registered = before.launch.registration is not None and (
                    before.instance.registration > before.launch.registration
                )
                paused = before.instance.status is InstanceStatus.SUSPENDED and (
                    before.instance.sleep_until is None
                )
                resumed = before.pending is not None and (
                    before.pending.signal_type is SignalType.RESUME
                )
                if finished:
                    due = None
                elif not registered:
                    due = now
                else:
                    due = now if paused and resumed else None
                released_at = {"next_launch_at": due, "claimed_by": None, "claimed_until": None}
                _moved(before.launch, after.launch, **released_at)
            return
        process = self.processes.get(seen.pid) if seen.pid is not None else None
        alive = process is not None and process.alive
        local = seen.claimed_by is not None and seen.host == launcher.host
        if local and alive:
            adopted = self.storage.run(
                lambda tx: launches.adopt(tx, instance_id, seen.holder, launcher.name, now, LEASE)
            )
            assert adopted is not None, f"{launcher.name} could not adopt {_state(before)}"
            after = self.snapshot(instance_id)
            _moved(before.launch, after.launch, claimed_by=launcher.name, claimed_until=now + LEASE)
            assert adopted == after.launch
            launcher.watched[instance_id] = Watch(after.launch.holder, now + LEASE, seen.pid)
            return
        if alive and not silent and not finished:
            return  # a remote process, not silent for long enough yet
        self.record_exit(launcher, instance_id, "was lost", None, None, lost_as=seen.holder)

    # --- the end of an attempt -------------------------------------------------------

    def record_exit(
        self,
        launcher: Launcher,
        instance_id: str,
        how: str,
        code: int | None,
        number: int | None,
        *,
        lost_as: LaunchHolder | None = None,
    ) -> None:
        """``exited`` for the attempt ``launcher`` watches, or ``relaunch_lost`` of the
        launch seen held as ``lost_as``; checks the outcome against the model."""
        now, backoff = self.now, BACKOFF
        before = self.snapshot(instance_id)
        lost = lost_as is not None
        if lost:
            holder = lost_as
            outcome = self.storage.run(
                lambda tx: launches.relaunch_lost(
                    tx, instance_id, lost_as, launcher.name, how, now, LEASE, backoff
                )
            )
            takes = before.launch.holder == lost_as and not (
                before.launch.claimed_until is not None
                and before.launch.claimed_until > now
                and before.launch.claimed_by != launcher.name
            )
        else:
            holder = launcher.watched.pop(instance_id).holder
            outcome = self.storage.run(
                lambda tx: launches.exited(
                    tx, instance_id, holder, how, now, backoff, code=code, signal=number
                )
            )
            takes = before.launch.holder == holder
        after = self.snapshot(instance_id)
        if not takes:
            assert outcome is launches.Outcome.STALE, (outcome, _state(before))
            assert after.launch == before.launch and after.exited == before.exited
            return
        expected = self.expected[instance_id]
        allowed, failures = self.outcomes(before, expected, lost)
        assert outcome in allowed, (
            f"attempt {holder.attempt} ({how}) of {_state(before)}: {outcome.value}, "
            f"expected {sorted(o.value for o in allowed)}"
        )
        if outcome in POLICY_OUTCOMES:
            expected.failures = failures
        elif outcome is launches.Outcome.SUSPENDED:
            expected.failures = 0
        if outcome is launches.Outcome.FAILED:
            expected.failed_by = "policy"
            assert after.instance.status is InstanceStatus.FAILED
        if outcome is launches.Outcome.STOPPED:
            assert after.instance.status is InstanceStatus.CANCELLED
        launch = after.launch
        assert launch.claimed_by is None and launch.pid is None and launch.claimed_until is None
        assert launch.attempt == before.launch.attempt and launch.last_exit == how
        assert launch.next_launch_at == _next_launch(outcome, before, now, failures)
        assert after.exited[len(before.exited) :] == [
            {
                "attempt": holder.attempt,
                "code": code,
                "signal": number,
                "how": how,
                "outcome": outcome.value,
                "failures": failures if outcome in POLICY_OUTCOMES else 0,
                "max_failures": expected.max_failures,
                "retry_at": (
                    launch.next_launch_at.isoformat(timespec="milliseconds")
                    if outcome is launches.Outcome.RELAUNCH
                    else None
                ),
            }
        ]

    def outcomes(
        self, before: Snapshot, expected: Expected, lost: bool
    ) -> tuple[frozenset[launches.Outcome], int]:
        """The outcomes the rules allow for the end of the current attempt, and the
        failures in a row should it be a failure."""
        instance, launch = before.instance, before.launch
        progress = expected.checkpoints > expected.at_claim
        failures = 0 if progress else expected.failures + 1
        policy = frozenset(
            {
                launches.Outcome.FAILED
                if failures >= launch.max_failures
                else launches.Outcome.RELAUNCH
            }
        )
        if instance.status.is_terminal:
            return frozenset({launches.Outcome.FINISHED}), failures
        since = [(n, pid) for n, pid in expected.registered if n > expected.registration_at_claim]
        own = [n for n, pid in since if pid == expected.attempt_pid]
        others = [n for n, pid in since if pid != expected.attempt_pid]
        if instance.status is InstanceStatus.SUSPENDED:
            if own:
                return frozenset({launches.Outcome.SUSPENDED}), failures
            if others:  # suspended by a process that was not this attempt's
                return policy | {launches.Outcome.SUSPENDED}, failures
        if launch.stop_deadline is not None:
            return frozenset({launches.Outcome.STOPPED}), failures
        if not lost and own and any(n > own[0] for n in others):
            return frozenset({launches.Outcome.TAKEN_OVER}), failures
        if not lost and others:  # another process registered since it was launched
            return policy | {launches.Outcome.TAKEN_OVER}, failures
        return policy, failures

    # --- processes -----------------------------------------------------------------

    @precondition(lambda self: any(p.alive for p in self.processes.values()))
    @rule(
        acts=st.lists(
            st.tuples(st.integers(0, 5), st.sampled_from(ACTIONS)), min_size=1, max_size=4
        ),
        seconds=st.sampled_from([1, 5, 30]),
        elapse=ELAPSE,
    )
    def processes_act(self, acts, seconds, elapse):
        """A few requests of running processes (a process registers first); ``seconds``
        is how long one sleeps."""
        self.now += elapse
        for which, action in acts:
            alive = [p for p in self.processes.values() if p.alive]
            if not alive:
                return
            process = alive[which % len(alive)]
            if action == "crash":
                process.alive = False
                continue
            try:
                if process.registration is None:
                    self.register(process)
                else:
                    self.act(process, action, dt.timedelta(seconds=seconds))
            except errors.Superseded:
                process.alive = False  # exit code 3, nothing more reported

    def register(self, process: Process) -> None:
        instance_id = process.instance_id
        try:
            number = self.storage.register_instance(instance_id, TENANT, None, self.now)
        except errors.RegistrationRefused:
            process.alive = False
            return
        process.registration = number
        self.expected[instance_id].registered.append((number, process.pid))

    def act(self, process: Process, action: str, duration: dt.timedelta) -> None:
        instance_id, now, number = process.instance_id, self.now, process.registration
        expected = self.expected[instance_id]
        try:
            if action == "register again":
                again = self.storage.register_instance(instance_id, TENANT, None, now, number)
                assert again == number, f"registered again as {again}, not {number}"
            elif action == "checkpoint":
                saved = self.storage.checkpoint(
                    instance_id, f"cp-{expected.checkpoints}", b"", now, number
                )
                if not saved.found:
                    expected.checkpoints += 1
                self.obey(process, saved.signals.pending)
            elif action == "poll":
                signals = self.storage.poll_signals(instance_id, None, now, number)
                self.obey(process, signals.pending)
            elif action == "sleep":
                cp = f"cp-{expected.checkpoints}"
                self.storage.begin_sleep(instance_id, duration, cp, b"", now, number)
                expected.checkpoints += 1
                process.alive = False  # sleep(exit=True): the process leaves
            elif action == "complete":
                self.storage.record_event(
                    instance_id, EventType.COMPLETED, b"1", now, registration=number
                )
                process.alive = False
            else:
                self.fail(process)
        except (errors.InvalidInstanceState, errors.InstanceFinished):
            self.fail(process)  # the SDK reports the refused request as the failure
        except errors.RegistrationRefused:
            process.alive = False  # registering again, the instance had finished

    def fail(self, process: Process) -> None:
        process.alive = False
        try:
            self.storage.record_event(
                process.instance_id,
                EventType.FAILED,
                b"the workflow failed",
                self.now,
                registration=process.registration,
            )
        except (errors.InstanceFinished, errors.Superseded):
            return
        self.expected[process.instance_id].failed_by = "sdk"

    def obey(self, process: Process, pending: records.Signal | None) -> None:
        """What the SDK does with a pending signal it was told about."""
        if pending is None:
            return
        instance_id, now, number = process.instance_id, self.now, process.registration
        self.storage.acknowledge_signal(instance_id, pending.signal_type, True, now, number)
        if pending.signal_type is SignalType.CANCEL:
            process.alive = False
        elif pending.signal_type is SignalType.PAUSE:
            self.storage.record_event(
                instance_id, EventType.SUSPENDED, b"", now, registration=number
            )
            process.alive = False

    # --- a quiescent point ---------------------------------------------------------

    @precondition(lambda self: self.steps >= SETTLE_AFTER)
    @rule()
    def settle(self):
        """Kill every process and bring every launcher back; let them record what
        ended and look after what lapsed, relaunching (into crashes) what is due,
        until nothing moves; then everything must be finished or waiting."""
        for process in self.processes.values():
            process.alive = False
        for launcher in self.launchers.values():
            if not launcher.alive:
                self.come_back_as(launcher)
        first = self.launchers["L0"]
        for _ in range(4 * INSTANCES * 3 + 4):
            for launcher in self.launchers.values():
                for instance_id in self.ended(launcher):
                    self.record_exit(launcher, instance_id, "killed", None, signal.SIGKILL)
                self.renew_by(launcher)
            self.now += QUIET
            for launcher in self.launchers.values():
                self.look_after_lapsed_by(launcher, silent=True)
            for instance_id in self.claim_by(first, INSTANCES):
                self.spawn_by(first, instance_id, "run")
            for process in self.processes.values():
                process.alive = False
            if not self.moving():
                break
        assert not self.moving(), "the launches never settled"
        self.steps = 0
        for instance_id in self.expected:
            state = self.snapshot(instance_id)
            instance, launch = state.instance, state.launch
            if instance.status.is_terminal:
                assert launch.next_launch_at is None and launch.claimed_by is None, _state(state)
                if instance.status is not InstanceStatus.COMPLETED:
                    self.retry_would_go(instance_id)
            else:
                waiting = (
                    instance.status is InstanceStatus.SUSPENDED
                    and instance.sleep_until is None
                    and (
                        state.pending is None or state.pending.signal_type is not SignalType.RESUME
                    )
                )
                assert waiting and launch.claimed_by is None, _state(state)
                assert launch.next_launch_at is None, _state(state)

    def retry_would_go(self, instance_id: str) -> None:
        """A retry of the failed or cancelled instance is accepted (then undone)."""
        now = self.now

        def retry(tx):
            launches.retry(tx, instance_id, now)
            raise WhatIf

        try:
            self.storage.run(retry)
        except WhatIf:
            return

    def moving(self) -> bool:
        """Whether a launcher still watches anything, or a live instance is due, held
        or asleep (an unwatched sleeper is woken when its time comes)."""
        if any(launcher.watched for launcher in self.launchers.values()):
            return True
        for state in self.snapshots().values():
            if not state.instance.status.is_terminal and (
                state.launch.claimed_by is not None
                or state.launch.next_launch_at is not None
                or state.instance.sleep_until is not None
            ):
                return True
        return False

    # --- invariants ----------------------------------------------------------------

    @invariant()
    def the_launches_are_consistent(self):
        self.steps += 1
        beliefs: dict[str, list[tuple[str, Watch]]] = {}
        for launcher in self.launchers.values():
            if launcher.alive:
                for instance_id, watch in launcher.watched.items():
                    if watch.until > self.now:
                        beliefs.setdefault(instance_id, []).append((launcher.name, watch))
        states = self.snapshots()
        for instance_id, expected in self.expected.items():
            state = states[instance_id]
            instance, launch = state.instance, state.launch
            held = beliefs.get(instance_id, [])
            assert len(held) <= 1, f"{instance_id} held in force by {[n for n, _ in held]}"
            for _, watch in held:
                assert launch.holder == watch.holder or launch.claimed_by is None, (
                    f"{instance_id}: believed held as {watch.holder}, but {_state(state)}"
                )
            assert launch.attempt >= self.highest_attempt[instance_id]
            self.highest_attempt[instance_id] = launch.attempt
            assert launch.failures == expected.failures, (
                f"{instance_id}: {launch.failures} failures in a row, the model counts "
                f"{expected.failures}: {_state(state)}"
            )
            assert 0 <= launch.failures <= launch.max_failures
            if instance.status is InstanceStatus.FAILED:
                assert expected.failed_by is not None, f"{instance_id} failed by nobody"
                if expected.failed_by == "policy":
                    assert launch.failures == launch.max_failures
            if launch.claimed_by is not None:
                assert launch.next_launch_at is None, _state(state)
                assert launch.claimed_until is not None
            else:
                assert launch.claimed_until is None and launch.pid is None, _state(state)
            attempts = [facts["attempt"] for facts in state.launched]
            assert len(attempts) == len(set(attempts)), f"{instance_id} launched {attempts}"
            assert attempts == sorted(attempts)


def _moved(before: records.Launch, after: records.Launch, **changes) -> None:
    """``after`` is ``before`` with exactly ``changes`` (column: new value) written."""
    assert after == attrs.evolve(before, **changes), (
        f"expected {changes}, but the launch went from {before} to {after}"
    )


def _retryable(state: Snapshot, now: dt.datetime) -> bool:
    """Whether the rules let an operator retry the instance now: it failed or was
    cancelled, and no launcher holds its launch with a claim in force."""
    launch = state.launch
    in_force = launch.claimed_by is not None and launch.claimed_until > now
    return (
        state.instance.status in (InstanceStatus.FAILED, InstanceStatus.CANCELLED) and not in_force
    )


def _next_launch(
    outcome: launches.Outcome, before: Snapshot, now: dt.datetime, failures: int
) -> dt.datetime | None:
    if outcome is launches.Outcome.RELAUNCH:
        return now + BACKOFF.after(failures)
    if outcome is launches.Outcome.SUSPENDED:
        if before.instance.sleep_until is not None:
            return before.instance.sleep_until
        resumed = before.pending is not None and before.pending.signal_type is SignalType.RESUME
        return now if resumed else None
    return None


def _state(state: Snapshot) -> str:
    instance, launch = state.instance, state.launch
    return (
        f"instance {instance.status.value} (registration {instance.registration}, "
        f"checkpoint {instance.checkpoint_id}, sleep_until {instance.sleep_until}), launch "
        f"attempt {launch.attempt} claimed_by {launch.claimed_by} until {launch.claimed_until} "
        f"pid {launch.pid} registration {launch.registration} next {launch.next_launch_at} "
        f"failures {launch.failures}/{launch.max_failures} stop {launch.stop_deadline}"
    )


# --- the tests ---------------------------------------------------------------------


def _examples(default: int) -> int:
    value = os.environ.get(EXAMPLES_VARIABLE)
    return int(value) if value else default


def _run_model(url: str, examples: int) -> None:
    storage = selection.open_driver(StorageConfig(database_url=url), workers=2)
    storage.migrate()

    class OnThisStore(LaunchProtocol):
        pass

    OnThisStore.storage = storage
    try:
        run_state_machine_as_test(
            OnThisStore,
            settings=settings(
                max_examples=_examples(examples),
                stateful_step_count=40,
                deadline=None,
                database=None,
                print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    finally:
        storage.close()


def test_the_launch_protocol_on_sqlite_follows_its_model(tmp_path):
    _run_model(sqlite_url(tmp_path), 30)


def test_the_launch_protocol_on_postgres_follows_its_model(postgres_url):
    _run_model(postgres_url, 12)  # each transaction is a round trip: fewer in CI
