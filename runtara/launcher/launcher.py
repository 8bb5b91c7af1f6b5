"""The launcher: the one component that starts and watches instance processes.

Each server runs one (in its first server process), on its own thread,
ticking five times a second and at once when one of its processes ends. The
launch protocol it follows, state by state, is in
:mod:`runtara.storage.launches`; a tick:

1. at its first tick, finds the launches it held before a restart (its name is
   the same across restarts) and adopts their processes at once;
2. reaps the processes it started that ended, and records how (the store
   decides by the restart policy: finished, suspended, relaunch after a
   back-off, or failed); an exit whose record fails is kept and recorded again
   at the next tick; whatever an ended attempt left running is ended too
   (:mod:`runtara.launcher.containment`);
3. stops processes past their stop deadline (SIGTERM, then SIGKILL, to
   everything the attempt started) and kills those silent for longer than
   ``silence`` (a hung process is a crashed one);
4. renews the claims of the processes it watches, and no others; a claim it
   finds taken over by another launcher is no longer watched here;
5. looks at launches nobody holds any more (their server died): a process
   still alive on this machine is adopted and watched, a gone or silent one is
   relaunched; an unwatched sleeper that is due is made due;
6. gives due sleepers that nothing launches a launch of the wake command, if
   the server has one;
7. claims due launches, up to ``max_running`` processes at once, oldest due
   first, and spawns them; whatever goes wrong with one launch (a malformed
   specification, a program that cannot start) stays with that launch.

Everything another launcher must respect is a row in the store, never memory.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import attrs

from runtara import clock, errors, metrics, records, tracing
from runtara.credentials import Credentials
from runtara.launcher import cgroups, containment, logs, processes
from runtara.launcher.spec import DEFAULT_MAX_FAILURES, LaunchSpec
from runtara.storage import base, launches

logger = logging.getLogger(__name__)

INPUT_FILE = "input.json"
LAPSED_BATCH = 20
"""Launches nobody holds looked at per tick."""


@attrs.define
class Settings:
    server_addr: str
    """Where instances connect (RUNTARA_SERVER_ADDR)."""
    skip_cert_verification: bool
    runs_dir: Path
    name: str | None = None
    """The launcher's name in the store, the same across restarts of one server (so
    that a restarted server adopts its processes at once); None: a fresh one."""
    max_running: int = 16
    tick: float = 0.2
    lease: float = 15.0
    """How long a claim holds without renewal (a dead launcher's instances are
    looked at again after this); claims are renewed every third of it."""
    silence: float = 90.0
    """A running instance that sent nothing for this long is treated as crashed."""
    backoff: float = 1.0
    backoff_cap: float = 60.0
    kill_after: float = 5.0
    """How long SIGTERM has before SIGKILL when a process is stopped, or when the
    processes an attempt left behind are ended."""
    cgroups: bool = True
    """Give each attempt a cgroup of its own when the server may make one
    (``--instance-cgroups``)."""
    log_limit: int = 10 * 1024 * 1024
    wake_command: str | None = None
    """Run through /bin/sh for sleepers nothing launches (``--wake-command``)."""
    wake_grace: float = 5.0
    """How long past its wake time a sleeper waits for a live process's own timer."""
    wake_batch: int = 10
    management_addr: str | None = None
    """Where instances reach the management service (RUNTARA_MANAGEMENT_ADDR), to
    start and wait for their children."""
    credentials: Credentials | None = None
    """The server's; each process gets its instance's child credential only
    (RUNTARA_CHILD_TOKEN), never these."""
    child_umask: int = -1
    """The umask instance processes get (-1: the server's own, which keeps the
    server's files private; the server passes the one it was started with)."""


@attrs.define(eq=False)
class _Watched:
    """A process this launcher watches: one it started, or one it adopted."""

    instance_id: str
    holder: records.LaunchHolder
    pid: int
    started: int | None
    process: processes.Attempt | None = None
    """None for an adopted process (its exit status cannot be known)."""
    members: containment.Members | None = None
    """Everything the attempt started (None: it never started)."""
    since: float = attrs.Factory(time.monotonic)
    """When this launcher began watching it."""
    renewed: float = attrs.Factory(time.monotonic)
    terminated_at: float | None = None
    ended: processes.Exit | None = None
    """How it ended, once known, until that is recorded."""
    span: tracing.AttemptSpan | None = None
    """The attempt's span, when traces are on."""


class Launcher:
    def __init__(
        self,
        storage: base.StorageDriver,
        settings: Settings,
        *,
        now: Callable[[], dt.datetime] = clock.utc_now,
    ) -> None:
        self.storage = storage
        self.settings = settings
        self._now = now
        self.host = socket.gethostname()
        self.id = settings.name or f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._watched: dict[str, _Watched] = {}
        self._recovered = False
        self._cgroup_parent = containment.choose(settings.cgroups)
        self._leftovers = containment.Leftovers(settings.kill_after)
        self.launched = 0
        self.failed_launches = 0
        self.poke: Callable[[], object] = lambda: None
        """Called (on another thread) when a process this launcher started ends."""
        self.tracing = tracing.setup("runtara-core")
        """The attempts' spans (None: traces are off, see :mod:`runtara.tracing`)."""

    @property
    def running(self) -> int:
        return len(self._watched)

    def tick(self) -> None:
        if not self._recovered:
            self._recover_own()
            self._recovered = True
        self._reap()
        self._leftovers.tick()
        self._enforce()
        self._renew()
        self._look_after_lapsed()
        self._wake_sleepers()
        self._launch_due()

    def stop(self) -> None:
        """The server stops: leave the processes running (they wait for a server and
        are adopted again after a restart); the claims lapse by themselves. What
        the ended ones left running is killed."""
        self._watched.clear()
        self._leftovers.kill()
        if self.tracing is not None:
            self.tracing.flush()

    def _backoff(self) -> launches.Backoff:
        settings = self.settings
        return launches.Backoff(settings.backoff, settings.backoff_cap, random.uniform(0.5, 1.0))

    def _run(self, work, *, write: bool = True):
        return self.storage.run(work, write=write)

    # --- a restarted server's own launches ----------------------------------

    def _recover_own(self) -> None:
        """Launches this launcher's name held before a restart: their processes are
        adopted (or relaunched, if gone) now rather than when the claims lapse."""
        now = self._now()
        for launch in self._run(lambda tx: launches.held_by(tx, self.id, 1000), write=False):
            self._look_after(launch, now)

    # --- processes that ended ---------------------------------------------

    def _reap(self) -> None:
        for watched in list(self._watched.values()):
            if watched.ended is None:
                if watched.process is not None:
                    watched.ended = watched.process.poll()
                elif not processes.alive(watched.pid, watched.started):
                    watched.ended = processes.Exit(None)
                if watched.ended is not None and watched.members is not None:
                    self._leftovers.add(watched.instance_id, watched.members, watched.terminated_at)
            if watched.ended is None:
                continue
            try:
                self._record_exit(watched, watched.ended)
            except errors.StorageError as error:
                logger.warning(
                    "instance %r: recording how its process ended failed (%s); trying again",
                    watched.instance_id,
                    error,
                    extra={"instance_id": watched.instance_id, "action": "exited"},
                )
                continue
            del self._watched[watched.instance_id]

    def _record_exit(
        self, watched: _Watched, ended: processes.Exit, how: str | None = None
    ) -> None:
        how = how or ended.describe()
        stderr = logs.tail(logs.log_path(self.settings.runs_dir, watched.instance_id, "stderr"))
        now = self._now()
        backoff = self._backoff()
        outcome = self._run(
            lambda tx: launches.exited(
                tx,
                watched.instance_id,
                watched.holder,
                how,
                now,
                backoff,
                code=ended.code,
                signal=ended.signal,
                stderr=stderr,
            )
        )
        metrics.launch_ended(outcome.value)
        failing = outcome in (launches.Outcome.RELAUNCH, launches.Outcome.FAILED)
        if watched.span is not None:
            watched.span.end(
                how, code=ended.code, signal=ended.signal, outcome=outcome.value, failing=failing
            )
            watched.span = None
        (logger.warning if failing else logger.info)(
            "instance %r attempt %d %s: %s",
            watched.instance_id,
            watched.holder.attempt,
            how,
            outcome.value,
            extra={"instance_id": watched.instance_id, "action": "exited"},
        )

    # --- stops, silence, logs ---------------------------------------------

    def _enforce(self) -> None:
        if not self._watched:
            return
        now = self._now()
        ids = list(self._watched)
        states = self._run(
            lambda tx: {i: (tx.get_instance(i), tx.get_launch(i)) for i in ids}, write=False
        )
        silence = self.settings.silence
        silent_since = now - dt.timedelta(seconds=silence)
        for instance_id, (instance, launch) in states.items():
            watched = self._watched.get(instance_id)
            if watched is None or watched.ended is not None or instance is None or launch is None:
                continue
            if launch.stop_deadline is not None and now >= launch.stop_deadline:
                self._terminate(watched, "its stop grace ran out")
            elif (
                instance.status in (records.InstanceStatus.RUNNING, records.InstanceStatus.PENDING)
                and (instance.last_activity_at or instance.created_at) < silent_since
                and time.monotonic() - watched.since > silence
            ):
                self._terminate(watched, f"it sent nothing for {silence:g}s", at_once=True)
            for stream in logs.STREAMS:
                logs.cap(
                    logs.log_path(self.settings.runs_dir, instance_id, stream),
                    self.settings.log_limit,
                )

    def _terminate(self, watched: _Watched, why: str, *, at_once: bool = False) -> None:
        if watched.terminated_at is None:
            logger.warning(
                "instance %r: terminating pid %d: %s",
                watched.instance_id,
                watched.pid,
                why,
                extra={"instance_id": watched.instance_id, "action": "terminating"},
            )
            watched.terminated_at = time.monotonic()
            self._signal(watched, signal.SIGKILL if at_once else signal.SIGTERM)
        elif time.monotonic() - watched.terminated_at >= self.settings.kill_after:
            self._signal(watched, signal.SIGKILL)

    def _signal(self, watched: _Watched, number: int) -> None:
        """To everything the attempt started: its group, session and cgroup."""
        if watched.members is not None:
            watched.members.signal(number)

    def _renew(self) -> None:
        """Extend the claims of the processes watched here, every third of the lease."""
        due = time.monotonic() - self.settings.lease / 3
        for watched in list(self._watched.values()):
            if watched.renewed > due or watched.ended is not None:
                continue
            until = self._now() + dt.timedelta(seconds=self.settings.lease)
            kept = self._run(
                lambda tx, w=watched, until=until: launches.renew(
                    tx, w.instance_id, w.holder, until
                )
            )
            watched.renewed = time.monotonic()
            if not kept:
                # Another launcher took the launch over (this one was too slow to
                # renew): the process is its to watch now.
                del self._watched[watched.instance_id]
                if watched.span is not None:
                    watched.span.end("another launcher took over watching it")
                logger.warning(
                    "instance %r: another launcher took over watching pid %d",
                    watched.instance_id,
                    watched.pid,
                    extra={"instance_id": watched.instance_id, "action": "taken over"},
                )

    # --- launches nobody holds ----------------------------------------------

    def _look_after_lapsed(self) -> None:
        now = self._now()
        due_before = now - dt.timedelta(seconds=self.settings.wake_grace)
        found = self._run(
            lambda tx: launches.lapsed(tx, now, due_before, LAPSED_BATCH), write=False
        )
        for launch in found:
            if launch.instance_id not in self._watched:
                self._look_after(launch, now)

    def _look_after(self, launch: records.Launch, now: dt.datetime) -> None:
        """A launch nobody watches: a process still alive on this machine is watched
        again; a gone one is relaunched at once (or, for a finished instance, its end
        recorded); one that cannot be checked from here (another machine, or a
        process that took the instance over) is relaunched once it has been silent
        for the silence window; an unwatched sleeper whose wake time passed is due."""
        lease = dt.timedelta(seconds=self.settings.lease)
        silent_since = now - dt.timedelta(seconds=self.settings.silence)
        instance = self._run(lambda tx: tx.get_instance(launch.instance_id), write=False)
        if instance is None:
            return
        if launch.claimed_by is None and instance.status is records.InstanceStatus.SUSPENDED:
            due_before = now - dt.timedelta(seconds=self.settings.wake_grace)
            self._run(
                lambda tx: launches.wake_unwatched(
                    tx, launch.instance_id, launch.holder, now, due_before
                )
            )
            return
        if launch.claimed_by is not None and launch.pid is None:
            # Claimed by a launcher that stopped before it recorded a process. Its
            # process may yet register (spawned, then the record lost): once the
            # claim has run out, the store tells a started one from a due one.
            if launch.claimed_until is None or launch.claimed_until <= now:
                self._run(
                    lambda tx: launches.release_unstarted(
                        tx, launch.instance_id, launch.holder, now
                    )
                )
            return
        local = launch.claimed_by is not None and launch.host == self.host
        if local and processes.alive(launch.pid, launch.pid_started):
            if self.running < self.settings.max_running:
                self._adopt(launch, instance, now, lease)
            return
        if instance.status.is_terminal:
            how = "ended while no server watched it"
        elif local:
            how = "was lost: its process is gone and the server that watched it stopped"
        else:
            activity = max(
                instance.last_activity_at or instance.created_at,
                launch.launched_at or instance.created_at,
            )
            if activity > silent_since:
                return
            how = f"was lost: it sent nothing for {self.settings.silence:g}s"
        backoff = self._backoff()
        outcome = self._run(
            lambda tx: launches.relaunch_lost(
                tx, launch.instance_id, launch.holder, self.id, how, now, lease, backoff
            )
        )
        if outcome is not launches.Outcome.STALE:
            logger.warning(
                "instance %r %s: %s",
                launch.instance_id,
                how,
                outcome.value,
                extra={"instance_id": launch.instance_id, "action": "lost"},
            )

    def _adopt(
        self,
        launch: records.Launch,
        instance: records.Instance,
        now: dt.datetime,
        lease: dt.timedelta,
    ) -> None:
        adopted = self._run(
            lambda tx: launches.adopt(tx, launch.instance_id, launch.holder, self.id, now, lease)
        )
        if adopted is None:
            return
        folder = logs.run_folder(self.settings.runs_dir, launch.instance_id)
        span = None
        if self.tracing is not None:
            # the same span (its id derives from the attempt) that the server which
            # launched it began: ended here, with its start
            began = launch.launched_at.timestamp() if launch.launched_at else None
            span = self.tracing.attempt(
                launch.instance_id,
                instance.tenant_id,
                launch.attempt,
                int(began * 1e9) if began is not None else None,
                adopted=True,
            )
        self._watched[launch.instance_id] = _Watched(
            launch.instance_id,
            adopted.holder,
            launch.pid,
            launch.pid_started,
            members=containment.Members.adopted(
                launch.pid, launch.pid_started, folder.name, launch.attempt
            ),
            span=span,
        )
        logger.info(
            "instance %r: watching its running process %d again",
            launch.instance_id,
            launch.pid,
            extra={"instance_id": launch.instance_id, "action": "adopted"},
        )

    # --- due launches -------------------------------------------------------

    def _wake_sleepers(self) -> None:
        """Sleepers nothing launches get a launch of the wake command."""
        command = self.settings.wake_command
        if not command:
            return
        spec = LaunchSpec(("/bin/sh", "-c", command)).to_json()
        now = self._now()
        due_before = now - dt.timedelta(seconds=self.settings.wake_grace)
        woken = self._run(
            lambda tx: launches.wake_sleepers(
                tx,
                spec,
                DEFAULT_MAX_FAILURES,
                now,
                due_before,
                self.settings.wake_batch,
            )
        )
        for instance_id in woken:
            metrics.wake_attempted(True)
            logger.info(
                "instance %r is due: waking it with the wake command",
                instance_id,
                extra={"instance_id": instance_id, "action": "woken"},
            )

    def _launch_due(self) -> None:
        room = self.settings.max_running - self.running
        if room <= 0:
            return
        now = self._now()
        lease = dt.timedelta(seconds=self.settings.lease)
        for launch, instance in self._run(lambda tx: launches.claim(tx, self.id, now, lease, room)):
            try:
                self._spawn(launch, instance)
            except errors.StorageError as error:
                # The process may have started: the claim lapses and the lapsed-launch
                # rules find it (alive here: adopted; gone: relaunched).
                logger.warning(
                    "instance %r: recording its launch failed: %s",
                    launch.instance_id,
                    error,
                    extra={"instance_id": launch.instance_id, "action": "launch failed"},
                )

    def _spawn(self, launch: records.Launch, instance: records.Instance) -> None:
        holder = launch.holder
        try:
            spec = LaunchSpec.from_json(launch.spec)
        except errors.ConfigError as error:
            self._unlaunchable(launch, str(error))
            return
        folder = logs.run_folder(self.settings.runs_dir, launch.instance_id)
        header = (
            f"attempt {launch.attempt} ({launch.failures} failed in a row before it), "
            f"{self._now().isoformat()}"
        )
        if self._cgroup_parent is not None:
            # an earlier attempt may have ended while no launcher watched it
            cgroups.sweep_orphans(self._cgroup_parent, keep=self._leftovers.groups())
        span = None
        if self.tracing is not None:
            span = self.tracing.attempt(launch.instance_id, instance.tenant_id, launch.attempt)
        try:
            environment = self._environment(launch, instance, spec, folder)
            if span is not None:
                environment[tracing.TRACEPARENT] = span.traceparent
            attempt = processes.spawn(
                spec,
                environment,
                folder,
                header,
                launch.attempt,
                self._cgroup_parent,
                self.settings.child_umask,
            )
        except (OSError, ValueError, TypeError) as error:
            # OSError: a missing or unrunnable program; ValueError/TypeError: what
            # Popen refuses in the specification itself.
            self.failed_launches += 1
            metrics.launch_attempted(False)
            logger.warning(
                "instance %r: cannot start %s: %s",
                launch.instance_id,
                spec.command[0] if spec.command else "(no command)",
                error,
                extra={"instance_id": launch.instance_id, "tenant": instance.tenant_id},
            )
            watched = _Watched(
                launch.instance_id, holder, 0, None, ended=processes.Exit(None), span=span
            )
            self._record_exit(watched, watched.ended, f"could not start: {error}")
            return
        self.launched += 1
        metrics.launch_attempted(True)
        metrics.queue_started(launch.queue)
        self._watched[launch.instance_id] = _Watched(
            launch.instance_id,
            holder,
            attempt.pid,
            attempt.started,
            attempt,
            members=containment.Members(attempt.pid, attempt.started, attempt.group),
            span=span,
        )
        threading.Thread(
            target=self._wake_on_exit, args=(attempt,), name="runtara-reaper", daemon=True
        ).start()
        now = self._now()
        self._run(
            lambda tx: launches.launched(
                tx, launch.instance_id, holder, attempt.pid, attempt.started, self.host, now
            )
        )
        # A relaunch: after a failed attempt, or of an instance that ran before
        # (it slept, was paused, or its server died).
        action = (
            "relaunched" if launch.attempt > 1 or instance.started_at is not None else "launched"
        )
        logger.info(
            "instance %r %s: attempt %d (%d failed in a row before it, at most %d), pid %d",
            launch.instance_id,
            action,
            launch.attempt,
            launch.failures,
            launch.max_failures,
            attempt.pid,
            extra={
                "instance_id": launch.instance_id,
                "tenant": instance.tenant_id,
                "action": action,
            },
        )

    def _unlaunchable(self, launch: records.Launch, reason: str) -> None:
        self.failed_launches += 1
        metrics.launch_attempted(False)
        logger.warning(
            "instance %r cannot be launched: %s",
            launch.instance_id,
            reason,
            extra={"instance_id": launch.instance_id, "action": "launch failed"},
        )
        now = self._now()
        self._run(
            lambda tx: launches.fail_unlaunchable(
                tx, launch.instance_id, launch.holder, reason, now
            )
        )

    def _wake_on_exit(self, attempt: processes.Attempt) -> None:
        attempt.process.wait()  # the launcher's thread collects the status with poll()
        self.poke()

    def _environment(
        self, launch: records.Launch, instance: records.Instance, spec: LaunchSpec, folder: Path
    ) -> dict[str, str]:
        environment = {
            name: value for name, value in os.environ.items() if not name.startswith("RUNTARA_")
        }
        if "PATH" not in spec.env:  # a PATH the specification sets is used as it is
            environment["PATH"] = processes.server_bin_first(environment.get("PATH"))
        environment.update(spec.env)
        environment.update(
            RUNTARA_INSTANCE_ID=instance.instance_id,
            RUNTARA_TENANT_ID=instance.tenant_id,
            RUNTARA_SERVER_ADDR=self.settings.server_addr,
        )
        if self.settings.skip_cert_verification:
            environment["RUNTARA_SKIP_CERT_VERIFICATION"] = "true"
        if self.settings.management_addr is not None and self.settings.credentials is not None:
            environment["RUNTARA_MANAGEMENT_ADDR"] = self.settings.management_addr
            environment["RUNTARA_CHILD_TOKEN"] = self.settings.credentials.child(
                instance.instance_id
            )
        if instance.checkpoint_id is not None:
            environment["RUNTARA_CHECKPOINT_ID"] = instance.checkpoint_id
        if launch.input is not None:
            environment["RUNTARA_INPUT_FILE"] = str(_write_input(folder, launch.input))
        return environment


def _write_input(folder: Path, data: bytes) -> Path:
    """The input in the run folder, readable by the server's user alone."""
    logs.make_run_folder(folder)
    path = folder / INPUT_FILE
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb", closefd=False) as target:
            target.write(data)
    finally:
        os.close(fd)
    return path
