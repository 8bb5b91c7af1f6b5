"""The wake scheduler: relaunch instances whose durable sleep is due.

An instance is due when it is suspended and its ``sleep_until`` has passed by
more than ``grace`` (so that a sleep still running on a live connection wakes
through its own timer first). Each round claims a bounded batch, oldest first,
so that no other scheduler, in this process or another one sharing the
database, launches the same instance; runs the wake command for each; and
clears ``sleep_until`` only once the launch succeeded. A failed launch leaves
the instance due, logs the failure, and defers the next try with exponential
back-off.

A launch succeeds when the command is still running after ``probe`` seconds or
has exited with status 0 by then.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import time
from collections.abc import Callable

from runtara import clock, config, errors, metrics, records
from runtara.storage import base

logger = logging.getLogger(__name__)

_DEFAULTS = config.ServerConfig()


class WakeScheduler:
    """Launches due sleepers with ``command``, ``batch`` at a time, each claimed for
    ``lease`` seconds; ``batch``, ``grace`` and ``lease`` default to the server's
    settings (``--wake-batch``, ``--wake-grace``, ``--wake-lease``)."""

    def __init__(
        self,
        storage: base.StorageDriver,
        command: str,
        *,
        server_addr: str,
        skip_cert_verification: bool,
        batch: int = _DEFAULTS.wake_batch,
        grace: float = _DEFAULTS.wake_grace,
        lease: float = _DEFAULTS.wake_lease,
        probe: float = 1.0,
        backoff: float = 5.0,
        max_backoff: float = 300.0,
        now: Callable[[], dt.datetime] = clock.utc_now,
    ) -> None:
        self._storage = storage
        self._command = command
        self._server_addr = server_addr
        self._skip_verification = skip_cert_verification
        self._batch = batch
        self._grace = dt.timedelta(seconds=grace)
        self._lease = dt.timedelta(seconds=lease)
        self._probe = probe
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._now = now
        self._failures: dict[str, int] = {}
        self._children: list[subprocess.Popen] = []

    def run_once(self) -> list[str]:
        """Launch every due instance, batch after batch; return the ids launched."""
        self._reap()
        launched: list[str] = []
        while True:
            now = self._now()
            claim_until = now + self._lease
            claimed = self._storage.run(
                lambda tx, now=now, claim_until=claim_until: tx.claim_due_sleepers(
                    due_before=now - self._grace,
                    now=now,
                    claim_until=claim_until,
                    limit=self._batch,
                )
            )
            if not claimed:
                return launched
            started = [(instance, self._launch(instance)) for instance in claimed]
            deadline = time.monotonic() + self._probe
            for instance, process in started:
                if self._succeeded(instance, process, deadline):
                    self._finish(instance, claim_until, None)
                    launched.append(instance.instance_id)
                else:
                    self._finish(instance, claim_until, self._retry_at(instance.instance_id))
            if len(claimed) < self._batch:
                return launched

    def _environment(self, instance: records.Instance) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            RUNTARA_INSTANCE_ID=instance.instance_id,
            RUNTARA_TENANT_ID=instance.tenant_id,
            RUNTARA_SERVER_ADDR=self._server_addr,
            RUNTARA_SKIP_CERT_VERIFICATION="true" if self._skip_verification else "false",
        )
        env.pop("RUNTARA_CHECKPOINT_ID", None)
        if instance.checkpoint_id is not None:
            env["RUNTARA_CHECKPOINT_ID"] = instance.checkpoint_id
        return env

    def _launch(self, instance: records.Instance) -> subprocess.Popen | OSError:
        try:
            process = subprocess.Popen(
                self._command,
                shell=True,
                env=self._environment(instance),
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as error:
            return error
        self._children.append(process)
        return process

    def _succeeded(
        self, instance: records.Instance, process: subprocess.Popen | OSError, deadline: float
    ) -> bool:
        if isinstance(process, OSError):
            reason = f"cannot run the wake command: {process}"
        else:
            try:
                code = process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                code = 0  # still running: the instance is up
            if code == 0:
                metrics.wake_attempted(True)
                self._failures.pop(instance.instance_id, None)
                logger.info("woke instance %r (pid %d)", instance.instance_id, process.pid)
                return True
            reason = f"the wake command exited with status {code}"
        metrics.wake_attempted(False)
        failures = self._failures.get(instance.instance_id, 0) + 1
        self._failures[instance.instance_id] = failures
        logger.warning(
            "waking instance %r failed (%s); attempt %d, next try in %.0fs",
            instance.instance_id,
            reason,
            failures,
            self._delay(failures),
        )
        return False

    def _delay(self, failures: int) -> float:
        return min(self._backoff * 2 ** (failures - 1), self._max_backoff)

    def _retry_at(self, instance_id: str) -> dt.datetime:
        return self._now() + dt.timedelta(seconds=self._delay(self._failures[instance_id]))

    def _finish(
        self, instance: records.Instance, claim_until: dt.datetime, retry_at: dt.datetime | None
    ) -> None:
        """Release our claim: clear the sleep after a launch, or defer the next try."""

        def work(tx: base.Transaction) -> None:
            current = tx.get_instance(instance.instance_id)
            if current is None or current.wake_claimed_until != claim_until:
                return  # deleted, or our claim expired and another scheduler took over
            if retry_at is None:
                update = records.InstanceUpdate(sleep_until=None, wake_claimed_until=None)
            else:
                update = records.InstanceUpdate(wake_claimed_until=retry_at)
            tx.update_instance(instance.instance_id, update)

        try:
            self._storage.run(work)
        except errors.StorageError as error:
            logger.warning("recording the wake of %r failed: %s", instance.instance_id, error)

    def _reap(self) -> None:
        self._children = [child for child in self._children if child.poll() is None]
