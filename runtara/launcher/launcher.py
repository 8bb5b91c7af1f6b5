"""The launcher: keeps instances started with ``runtara-core start`` running.

Each server process runs one, on its own thread, ticking five times a second
and at once when one of its processes ends. A tick:

1. reaps the processes it started that ended, and records how (the store
   decides: finished, suspended, relaunch after a back-off, or failed once
   the attempts are spent);
2. stops processes past their stop deadline (SIGTERM, then SIGKILL) and
   kills those silent for longer than ``silence`` (a hung process is a
   crashed one);
3. renews its claims, keeps log files under their cap;
4. looks at launches nobody holds any more (their server died): a process
   still alive on this machine is adopted and watched, a gone or silent one
   is relaunched;
5. claims due launches, up to ``max_running`` processes at once, oldest due
   first, and spawns them.

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

from runtara import clock, metrics, records
from runtara.launcher import logs, processes
from runtara.launcher.spec import LaunchSpec
from runtara.storage import base, launches

logger = logging.getLogger(__name__)

INPUT_FILE = "input.json"


@attrs.define
class Settings:
    server_addr: str
    """Where instances connect (RUNTARA_SERVER_ADDR)."""
    skip_cert_verification: bool
    runs_dir: Path
    max_running: int = 16
    tick: float = 0.2
    lease: float = 15.0
    """How long a claim holds without renewal (a dead launcher's instances are
    looked at again after this)."""
    silence: float = 90.0
    """A running instance that sent nothing for this long is treated as crashed."""
    backoff: float = 1.0
    backoff_cap: float = 60.0
    kill_after: float = 5.0
    """How long SIGTERM has before SIGKILL when a process is stopped."""
    log_limit: int = 10 * 1024 * 1024


@attrs.define(eq=False)
class _Watched:
    """A process this launcher watches: one it started, or one it adopted."""

    instance_id: str
    attempt: int
    pid: int
    started: int | None
    process: processes.Attempt | None = None
    """None for an adopted process (its exit status cannot be known)."""
    since: float = attrs.Factory(time.monotonic)
    """When this launcher began watching it."""
    terminated_at: float | None = None


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
        self.id = f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._watched: dict[str, _Watched] = {}
        self.launched = 0
        self.failed_launches = 0
        self.poke: Callable[[], object] = lambda: None
        """Called (on another thread) when a process this launcher started ends."""

    @property
    def running(self) -> int:
        return len(self._watched)

    def tick(self) -> None:
        self._reap()
        self._enforce()
        self._renew()
        self._look_after_lapsed()
        self._launch_due()

    def stop(self) -> None:
        """The server stops: leave the processes running (they reconnect to a server
        and are adopted again after a restart); the claims lapse by themselves."""
        self._watched.clear()

    # --- processes that ended ---------------------------------------------

    def _reap(self) -> None:
        for watched in list(self._watched.values()):
            if watched.process is not None:
                ended = watched.process.poll()
            elif processes.alive(watched.pid, watched.started):
                ended = None
            else:
                ended = processes.Exit(None)
            if ended is not None:
                del self._watched[watched.instance_id]
                self._record_exit(watched.instance_id, watched.attempt, ended)

    def _record_exit(
        self, instance_id: str, attempt: int, ended: processes.Exit, how: str | None = None
    ) -> None:
        how = how or ended.describe()
        stderr = logs.tail(logs.log_path(self.settings.runs_dir, instance_id, "stderr"))
        now = self._now()
        retry_at = now + dt.timedelta(seconds=self._backoff(attempt))
        outcome = self._run(
            lambda tx: launches.exited(
                tx,
                instance_id,
                self.id,
                attempt,
                how,
                now,
                code=ended.code,
                signal=ended.signal,
                stderr=stderr,
                retry_at=retry_at,
            )
        )
        metrics.launch_ended(outcome)
        log = logger.warning if outcome in ("relaunch", "failed") else logger.info
        log(
            "instance %r attempt %d %s: %s",
            instance_id,
            attempt,
            how,
            outcome,
            extra={"instance_id": instance_id, "action": "exited"},
        )

    def _backoff(self, attempt: int) -> float:
        """Exponential in the attempts made, capped, with jitter (half to all of it)."""
        settings = self.settings
        delay = min(settings.backoff_cap, settings.backoff * 2 ** max(0, attempt - 1))
        return delay * random.uniform(0.5, 1.0)

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
            if watched is None or instance is None or launch is None:
                continue
            if launch.stop_deadline is not None and now >= launch.stop_deadline:
                self._terminate(watched, "its stop grace ran out")
            elif (
                instance.status in (records.InstanceStatus.RUNNING, records.InstanceStatus.PENDING)
                and (instance.last_activity_at or instance.created_at) < silent_since
                and time.monotonic() - watched.since > silence
            ):
                self._terminate(
                    watched, f"it sent nothing for {self.settings.silence:g}s", at_once=True
                )
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
        try:
            os.killpg(watched.pid, number)
        except (ProcessLookupError, PermissionError):
            pass

    def _renew(self) -> None:
        if self._watched:
            until = self._now() + dt.timedelta(seconds=self.settings.lease)
            self._run(lambda tx: launches.renew(tx, self.id, until))

    # --- launches nobody holds ----------------------------------------------

    def _look_after_lapsed(self) -> None:
        """Launches nobody watches: a process still alive on this machine is watched
        again; a gone one is relaunched at once; one that cannot be checked from
        here (another machine, or a process that took the instance over) is
        relaunched once it has been silent for the silence window."""
        now = self._now()
        lease = dt.timedelta(seconds=self.settings.lease)
        silent_since = now - dt.timedelta(seconds=self.settings.silence)
        for launch in self._run(lambda tx: launches.lapsed(tx, now, 20), write=False):
            if launch.instance_id in self._watched:
                continue
            local = launch.claimed_by is not None and launch.pid is not None
            local = local and launch.host == self.host
            if local and processes.alive(launch.pid, launch.pid_started):
                if self.running < self.settings.max_running:
                    self._adopt(launch, now, lease)
                continue
            if local:
                how = "was lost: its process is gone and the server that watched it stopped"
            else:
                instance = self._run(
                    lambda tx, i=launch.instance_id: tx.get_instance(i), write=False
                )
                if instance is None or (instance.last_activity_at or instance.created_at) > (
                    silent_since
                ):
                    continue
                how = f"was lost: it sent nothing for {self.settings.silence:g}s"
            retry_at = now + dt.timedelta(seconds=self._backoff(launch.attempt))
            outcome = self._run(
                lambda tx, i=launch.instance_id, how=how, at=retry_at: launches.relaunch_lost(
                    tx, i, self.id, how, now, lease, at
                )
            )
            if outcome != "stale":
                logger.warning(
                    "instance %r %s: %s",
                    launch.instance_id,
                    how,
                    outcome,
                    extra={"instance_id": launch.instance_id, "action": "lost"},
                )

    def _adopt(self, launch: records.Launch, now: dt.datetime, lease: dt.timedelta) -> None:
        adopted = self._run(lambda tx: launches.adopt(tx, launch.instance_id, self.id, now, lease))
        if adopted is not None:
            self._watched[launch.instance_id] = _Watched(
                launch.instance_id, adopted.attempt, launch.pid, launch.pid_started
            )
            logger.info(
                "instance %r: watching its running process %d again",
                launch.instance_id,
                launch.pid,
                extra={"instance_id": launch.instance_id, "action": "adopted"},
            )

    # --- due launches -------------------------------------------------------

    def _launch_due(self) -> None:
        room = self.settings.max_running - self.running
        if room <= 0:
            return
        now = self._now()
        lease = dt.timedelta(seconds=self.settings.lease)
        for launch, instance in self._run(lambda tx: launches.claim(tx, self.id, now, lease, room)):
            self._spawn(launch, instance)

    def _spawn(self, launch: records.Launch, instance: records.Instance) -> None:
        spec = LaunchSpec.from_json(launch.spec)
        folder = logs.run_folder(self.settings.runs_dir, launch.instance_id)
        header = f"attempt {launch.attempt} of {launch.max_attempts}, {self._now().isoformat()}"
        try:
            environment = self._environment(launch, instance, spec, folder)
            attempt = processes.spawn(spec, environment, folder, header, launch.attempt)
        except OSError as error:
            self.failed_launches += 1
            metrics.launch_attempted(False)
            logger.warning(
                "instance %r: cannot start %s: %s",
                launch.instance_id,
                spec.command[0],
                error,
                extra={"instance_id": launch.instance_id, "tenant": instance.tenant_id},
            )
            self._record_exit(
                launch.instance_id,
                launch.attempt,
                processes.Exit(None),
                f"could not start: {error}",
            )
            return
        self.launched += 1
        metrics.launch_attempted(True)
        self._watched[launch.instance_id] = _Watched(
            launch.instance_id, launch.attempt, attempt.pid, attempt.started, attempt
        )
        threading.Thread(
            target=self._wake_on_exit, args=(attempt,), name="runtara-reaper", daemon=True
        ).start()
        now = self._now()
        self._run(
            lambda tx: launches.launched(
                tx,
                launch.instance_id,
                self.id,
                launch.attempt,
                attempt.pid,
                attempt.started,
                self.host,
                now,
            )
        )
        # A relaunch: after a failed attempt, or of an instance that ran before
        # (it slept, was paused, or its server died).
        action = (
            "relaunched" if launch.attempt > 1 or instance.started_at is not None else "launched"
        )
        logger.info(
            "instance %r %s: attempt %d of %d, pid %d",
            launch.instance_id,
            action,
            launch.attempt,
            launch.max_attempts,
            attempt.pid,
            extra={
                "instance_id": launch.instance_id,
                "tenant": instance.tenant_id,
                "action": action,
            },
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
        environment.update(spec.env)
        environment.update(
            RUNTARA_INSTANCE_ID=instance.instance_id,
            RUNTARA_TENANT_ID=instance.tenant_id,
            RUNTARA_SERVER_ADDR=self.settings.server_addr,
        )
        if self.settings.skip_cert_verification:
            environment["RUNTARA_SKIP_CERT_VERIFICATION"] = "true"
        if instance.checkpoint_id is not None:
            environment["RUNTARA_CHECKPOINT_ID"] = instance.checkpoint_id
        if launch.input is not None:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / INPUT_FILE
            path.write_bytes(launch.input)
            environment["RUNTARA_INPUT_FILE"] = str(path)
        return environment

    def _run(self, work, *, write: bool = True):
        return self.storage.run(work, write=write)
