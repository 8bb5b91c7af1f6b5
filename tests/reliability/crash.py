"""Crash safety under load: kill the server, and PostgreSQL,
while many instances checkpoint, and check that nothing acknowledged is lost.

Many instances, each on its own QUIC connection, checkpoint new ids one after
another against ``python -m runtara`` running as a child process. At random
moments the harness kills that process with SIGKILL and starts it again on the
same database and UDP port; with ``--postgres-kills`` it also stops PostgreSQL
itself (``pg_ctl -m immediate``) and starts it again while the server keeps
running.

Every checkpoint id has exactly one state, derived from the run's seed, the
instance and the id (random binary, mostly under 2 KiB, now and then empty or
16-64 KiB), so a retry sends the same bytes and any stored row can be checked
without keeping what was sent. A checkpoint is *acknowledged* when a
Checkpoint reply without error says ``found=false``, or ``found=true`` with
exactly that state. A request cut off by a kill is not acknowledged; the
client then either sends the same id again or moves on to a new one.

Checked after every restart (the clients are held meanwhile) and at the end,
by reading the database through the storage driver:

- every acknowledged checkpoint is stored, with exactly its bytes;
- every stored checkpoint is one a client sent, with exactly the bytes sent
  for that id (nothing half-written, nothing foreign);
- ``instances.checkpoint_id``, when set, names a stored checkpoint.

Rows are compared byte for byte once each plus a random sample of the older
ones at every check, and all of them at the end; sizes at every check.

Checked by the clients through the protocol:

- after every server restart each instance registers again (success) and
  resumes: a Checkpoint of its last acknowledged id answers ``found=true``
  with the original bytes, and so does a GetCheckpoint of a random
  acknowledged one, before the load goes on;
- no reply contradicts what was sent (other bytes, or ``found=false`` for an
  acknowledged id);
- while the server lives, every request is answered within the request
  timeout, and only during a PostgreSQL outage with an error;
- after PostgreSQL comes back, every instance's checkpoints succeed again
  within the recovery timeout;
- the server never exits by itself and stops with exit code 0 on SIGTERM at
  the end.

When a kill happens the harness cancels the requests in flight at once (a real
client would find out through its request timeout) and closes the old
connections; the clients reconnect to the restarted server.

The short version runs in the test suite (``tests/reliability/test_crash.py``).
The long version, by hand, from the repository's root folder:

    python -m tests.reliability.crash --driver sqlite --kills 20 --duration 120
    python -m tests.reliability.crash --driver postgres --kills 20 --postgres-kills 3 --duration 120

``--driver postgres`` without ``--database-url`` starts a throwaway PostgreSQL
cluster the way the tests do (``tests/postgres.py``) and removes it afterwards;
``--postgres-kills`` needs that cluster (``--postgres-outage`` sets how long
PostgreSQL stays down, 1 s by default). The run prints progress on stderr and
a summary on stdout, and exits 0 when no acknowledged checkpoint was lost and
every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtara import errors, records
from runtara.client.connection import Connection
from runtara.config import StorageConfig
from runtara.protocol import instance_pb2 as pb
from runtara.storage import base, selection
from tests.support import ServerProcess, sqlite_url

KiB = 1024
MiB = 1024 * KiB
TENANT = "crash-test"
CUT_OFF = "cut off by a server kill"
"""The one way a request may fail outside a PostgreSQL outage."""
MAX_PROBLEMS_SHOWN = 20


def expected_state(seed: int, instance_id: str, checkpoint_id: str) -> bytes:
    """The one state ever sent for this checkpoint id."""
    rng = random.Random(f"{seed}/{instance_id}/{checkpoint_id}")
    roll = rng.random()
    if roll < 0.02:
        size = 0
    elif roll < 0.05:
        size = rng.randint(16 * KiB, 64 * KiB)
    else:
        size = rng.randint(1, 2 * KiB)
    return rng.randbytes(size)


@dataclass
class Settings:
    driver: str
    """``sqlite`` or ``postgres``."""
    database_url: str
    workdir: Path
    """The server's working folder."""
    clients: int = 16
    """Instances, each on its own connection."""
    kills: int = 3
    """Server SIGKILLs."""
    postgres_kills: int = 0
    """PostgreSQL crashes (``pg_ctl -m immediate``); needs ``postgres``."""
    duration: float = 6.0
    """Seconds of load in all, cut by the kills at random moments."""
    seed: int = field(default_factory=lambda: random.randrange(1 << 32))
    postgres: Any = None
    """A ``tests.postgres.Cluster`` holding the database, for ``postgres_kills``."""
    postgres_outage: float = 1.0
    """Seconds PostgreSQL stays down."""
    request_timeout: float = 30.0
    """A live server that answers nothing for this long is hung."""
    recovery_timeout: float = 60.0
    """Time the instances get to resume after a restart."""
    byte_sample: int = 512
    """Rows compared again byte for byte at each check, besides the new ones."""
    log: Callable[[str], None] = lambda line: None


@dataclass
class Report:
    driver: str
    clients: int
    seed: int
    kills: int = 0
    kills_survived: int = 0
    postgres_restarts: int = 0
    requests: int = 0
    acknowledged: int = 0
    resumes: int = 0
    failures: Counter = field(default_factory=Counter)
    """Requests that were not answered successfully, by kind."""
    postgres_outage_failures: int = 0
    lost: set = field(default_factory=set)
    """(instance id, checkpoint id) of acknowledged checkpoints found missing or changed."""
    problems: list = field(default_factory=list)
    stored: int = 0
    stored_unacknowledged: int = 0
    """Rows committed whose reply never reached the client (allowed)."""
    peak_rss: int = 0
    load_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.lost and not self.problems

    def summary(self) -> str:
        failures = ", ".join(f"{kind}: {count:,}" for kind, count in self.failures.most_common())
        lines = [
            f"runtara-core crash test: driver {self.driver}, {self.clients} clients, "
            f"seed {self.seed}",
            f"  server kills survived:          {self.kills_survived} of {self.kills}",
            f"  PostgreSQL crashes survived:    {self.postgres_restarts}",
            f"  load time:                      {self.load_seconds:.1f} s "
            f"(wall {self.wall_seconds:.1f} s)",
            f"  requests sent:                  {self.requests:,}",
            f"  checkpoints acknowledged:       {self.acknowledged:,}",
            f"  checkpoints stored:             {self.stored:,} "
            f"({self.stored_unacknowledged:,} of them never acknowledged)",
            f"  instances resumed after kills:  {self.resumes:,}",
            f"  requests not acknowledged:      {sum(self.failures.values()):,}"
            + (f" ({failures})" if failures else ""),
            f"  acknowledged checkpoints lost:  {len(self.lost)}",
            f"  other problems:                 {len(self.problems)}",
            f"  peak server RSS:                {self.peak_rss / MiB:.1f} MiB",
        ]
        lines += [f"    {problem}" for problem in self.problems[:MAX_PROBLEMS_SHOWN]]
        if len(self.problems) > MAX_PROBLEMS_SHOWN:
            lines.append(f"    ... and {len(self.problems) - MAX_PROBLEMS_SHOWN} more")
        lines.append(f"  result:                         {'PASS' if self.ok else 'FAIL'}")
        return "\n".join(lines)


# --- the server -----------------------------------------------------------------


class ServerLife:
    """One run of the server process, from start to kill."""

    def __init__(self, process: ServerProcess, generation: int) -> None:
        self.process = process
        self.generation = generation
        self.address: tuple[str, int] = process.address
        self.inflight: set[asyncio.Future] = set()

    def peak_rss(self) -> int:
        """The process's peak resident set size in bytes (VmHWM), 0 if gone."""
        try:
            status = Path(f"/proc/{self.process.process.pid}/status").read_text()
        except OSError:
            return 0
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * KiB
        return 0

    def exit_code(self) -> int | None:
        return self.process.process.poll()


# --- the clients ----------------------------------------------------------------


class Client:
    """One instance on its own connection, checkpointing new ids in a loop."""

    def __init__(self, harness: Harness, index: int) -> None:
        self.harness = harness
        self.seed = harness.settings.seed
        self.instance_id = f"crash-{index:02d}"
        self.rng = random.Random(f"{self.seed}/{self.instance_id}")
        self.registered = False
        self.sent: set[str] = set()
        self.acked: list[str] = []
        self.acked_set: set[str] = set()
        self.next_number = 0
        self.retry: str | None = None
        self.connection: Connection | None = None
        self.life: ServerLife | None = None
        """The server run this client is registered with (None: reconnect)."""
        self.last_success = 0.0
        self.last_failure = ""

    def state(self, checkpoint_id: str) -> bytes:
        return expected_state(self.seed, self.instance_id, checkpoint_id)

    async def run(self) -> None:
        harness = self.harness
        try:
            while await harness.proceed():
                life = harness.life
                if self.life is not life:
                    if not await self.resume(life):
                        await asyncio.sleep(0.1)
                    continue
                await self.checkpoint_next(life)
        finally:
            await self.disconnect()

    async def resume(self, life: ServerLife) -> bool:
        """Connect, register and check the last acknowledged checkpoints."""
        await self.disconnect()
        try:
            self.connection = await Connection.open(*life.address, timeout=10)
        except errors.ClientError as error:
            self.harness.failed(self, "connect failed", str(error))
            return False
        reply = await self.call(
            life,
            register_instance=pb.RegisterInstanceRequest(
                instance_id=self.instance_id, tenant_id=TENANT
            ),
        )
        if reply is None:
            return False
        if not reply.register_instance.success:
            self.harness.failed(self, "register refused", reply.register_instance.error)
            return False
        self.registered = True
        if self.acked:
            last = self.acked[-1]
            reply = await self.call(
                life,
                checkpoint=pb.CheckpointRequest(
                    instance_id=self.instance_id, checkpoint_id=last, state=self.state(last)
                ),
            )
            if reply is None:
                return False
            self.compare(last, reply.checkpoint.found, reply.checkpoint.state, "Checkpoint")
            some = self.rng.choice(self.acked)
            reply = await self.call(
                life,
                get_checkpoint=pb.GetCheckpointRequest(
                    instance_id=self.instance_id, checkpoint_id=some
                ),
            )
            if reply is None:
                return False
            self.compare(some, reply.get_checkpoint.found, reply.get_checkpoint.state, "Get")
        if life.generation > 0:
            self.harness.report.resumes += 1
        self.life = life
        return True

    def compare(self, checkpoint_id: str, found: bool, state: bytes, what: str) -> None:
        """Check a reply about an acknowledged checkpoint after a restart."""
        where = f"{self.instance_id}/{checkpoint_id}"
        if not found:
            self.harness.lost(
                self.instance_id,
                checkpoint_id,
                f"{where}: {what} after restart "
                "answered found=false for an acknowledged checkpoint",
            )
        elif state != self.state(checkpoint_id):
            self.harness.lost(
                self.instance_id,
                checkpoint_id,
                f"{where}: {what} after restart "
                f"returned {len(state)} bytes that differ from the acknowledged ones",
            )

    async def checkpoint_next(self, life: ServerLife) -> None:
        if self.retry is not None:
            checkpoint_id, self.retry = self.retry, None
        else:
            checkpoint_id = f"cp-{self.next_number:06d}"
            self.next_number += 1
        state = self.state(checkpoint_id)
        first = checkpoint_id not in self.sent
        self.sent.add(checkpoint_id)
        reply = await self.call(
            life,
            checkpoint=pb.CheckpointRequest(
                instance_id=self.instance_id, checkpoint_id=checkpoint_id, state=state
            ),
        )
        if reply is None:
            if self.rng.random() < 0.5:
                self.retry = checkpoint_id  # as a relaunched instance would
            return
        where = f"{self.instance_id}/{checkpoint_id}"
        answer = reply.checkpoint
        if answer.found and first:
            self.harness.problem(f"{where}: found=true for an id never sent before")
        elif answer.found and answer.state != state:
            self.harness.problem(
                f"{where}: found=true with {len(answer.state)} bytes that differ from "
                f"the {len(state)} sent"
            )
        elif not answer.found and checkpoint_id in self.acked_set:
            self.harness.lost(
                self.instance_id, checkpoint_id, f"{where}: acknowledged, now found=false"
            )
        else:
            if checkpoint_id not in self.acked_set:
                self.acked_set.add(checkpoint_id)
                self.acked.append(checkpoint_id)
                self.harness.report.acknowledged += 1
            self.last_success = time.monotonic()

    async def call(self, life: ServerLife, **oneof) -> pb.RpcResponse | None:
        """One request; None (and the failure recorded) unless a reply without error came."""
        self.harness.report.requests += 1
        task = asyncio.ensure_future(
            self.connection.call(pb.RpcRequest(**oneof), pb.RpcResponse, timeout=None)
        )
        life.inflight.add(task)
        timeout = self.harness.settings.request_timeout
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout)
        finally:
            life.inflight.discard(task)
        kind = next(iter(oneof))
        if not done:
            task.cancel()
            self.harness.failed(self, "no reply", f"{kind}: no reply within {timeout:g}s")
        elif task.cancelled():
            self.harness.failed(self, CUT_OFF, kind)
            return None
        elif task.exception() is not None:
            error = task.exception()
            self.harness.failed(self, "connection failed", f"{kind}: {error!r}")
        elif task.result().HasField("error"):
            error = task.result().error
            self.harness.failed(self, f"{error.code} reply", f"{kind}: {error.message}")
            await asyncio.sleep(0.05)  # no busy loop while the database is down
            return None
        else:
            return task.result()
        self.life = None  # the connection is in doubt: start afresh
        return None

    async def disconnect(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            await connection.close(wait=0.2)


# --- the database check ----------------------------------------------------------


@dataclass(frozen=True)
class Expectation:
    """What one instance's client knows at a check (the clients are held)."""

    registered: bool
    sent: frozenset
    acked: frozenset


@dataclass
class CheckResult:
    problems: list = field(default_factory=list)
    lost: set = field(default_factory=set)
    stored: int = 0
    stored_unacknowledged: int = 0
    compared: int = 0


def _get_instance(tx: base.Transaction, *, instance_id: str):
    return tx.get_instance(instance_id)


def _list_page(tx: base.Transaction, *, instance_id: str, offset: int, limit: int) -> list:
    return tx.list_checkpoints(instance_id, limit=limit, offset=offset)


def _read_states(tx: base.Transaction, *, instance_id: str, ids: list[str]) -> list:
    return [tx.get_checkpoint(instance_id, checkpoint_id) for checkpoint_id in ids]


def _all_checkpoints(driver: base.StorageDriver, instance_id: str) -> list[records.CheckpointInfo]:
    page_size = 1000
    rows: list[records.CheckpointInfo] = []
    while True:
        page = driver.run(
            functools.partial(
                _list_page, instance_id=instance_id, offset=len(rows), limit=page_size
            ),
            write=False,
        )
        rows += page
        if len(page) < page_size:
            return rows


def check_database(
    storage: StorageConfig,
    seed: int,
    expectations: dict[str, Expectation],
    compared: set[tuple[str, str]],
    *,
    sample: int | None,
    rng: random.Random,
) -> CheckResult:
    """Read every instance's checkpoints and compare them with what was sent.

    Rows not in ``compared`` are compared byte for byte (and added to it), and
    ``sample`` of the others chosen at random (all of them when None).
    """
    result = CheckResult()
    per_instance = None if sample is None else -(-sample // max(1, len(expectations)))
    driver = selection.open_driver(storage, workers=2)
    try:
        for instance_id, expected in expectations.items():
            instance = driver.run(
                functools.partial(_get_instance, instance_id=instance_id), write=False
            )
            if instance is None:
                if expected.registered:
                    result.problems.append(f"{instance_id}: registered, but no instance row")
                continue
            sizes: dict[str, int] = {}
            for info in _all_checkpoints(driver, instance_id):
                where = f"{instance_id}/{info.checkpoint_id}"
                if info.checkpoint_id in sizes:
                    result.problems.append(f"{where}: listed twice")
                sizes[info.checkpoint_id] = info.size
                if info.checkpoint_id not in expected.sent:
                    result.problems.append(f"{where}: stored ({info.size} bytes), never sent")
                else:
                    sent = len(expected_state(seed, instance_id, info.checkpoint_id))
                    if info.size != sent:
                        result.problems.append(f"{where}: stored {info.size} bytes, sent {sent}")
                if info.checkpoint_id not in expected.acked:
                    result.stored_unacknowledged += 1
            result.stored += len(sizes)
            for checkpoint_id in sorted(expected.acked - sizes.keys()):
                result.lost.add((instance_id, checkpoint_id))
                result.problems.append(f"{instance_id}/{checkpoint_id}: acknowledged, not stored")
            if instance.checkpoint_id is not None and instance.checkpoint_id not in sizes:
                result.problems.append(
                    f"{instance_id}: instances.checkpoint_id names {instance.checkpoint_id!r}, "
                    "which is not stored"
                )
            known = [c for c in sizes if c in expected.sent]
            new = [c for c in known if (instance_id, c) not in compared]
            old = [c for c in known if (instance_id, c) in compared]
            if per_instance is not None:
                old = rng.sample(old, min(per_instance, len(old)))
            _compare_states(driver, seed, instance_id, expected, new + old, compared, result)
    finally:
        driver.close()
    return result


def _compare_states(
    driver: base.StorageDriver,
    seed: int,
    instance_id: str,
    expected: Expectation,
    ids: list[str],
    compared: set[tuple[str, str]],
    result: CheckResult,
) -> None:
    for start in range(0, len(ids), 100):
        batch = ids[start : start + 100]
        try:
            states = driver.run(
                functools.partial(_read_states, instance_id=instance_id, ids=batch), write=False
            )
        except errors.StorageError:  # find the unreadable rows one by one
            states = []
            for checkpoint_id in batch:
                try:
                    states += driver.run(
                        functools.partial(
                            _read_states, instance_id=instance_id, ids=[checkpoint_id]
                        ),
                        write=False,
                    )
                except errors.StorageError as error:
                    states.append(error)
        for checkpoint_id, stored in zip(batch, states, strict=True):
            where = f"{instance_id}/{checkpoint_id}"
            result.compared += 1
            if isinstance(stored, errors.StorageError):
                result.problems.append(f"{where}: unreadable: {str(stored)[:200]!r}")
            elif stored is None:
                result.problems.append(f"{where}: listed, but GetCheckpoint finds nothing")
            elif bytes(stored.state) != expected_state(seed, instance_id, checkpoint_id):
                result.problems.append(
                    f"{where}: stored {len(stored.state)} bytes that differ from those sent"
                )
            else:
                compared.add((instance_id, checkpoint_id))
                continue
            if checkpoint_id in expected.acked:
                result.lost.add((instance_id, checkpoint_id))


# --- the harness ----------------------------------------------------------------


class Harness:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.report = Report(settings.driver, settings.clients, settings.seed)
        self.rng = random.Random(settings.seed)
        self.clients = [Client(self, index) for index in range(settings.clients)]
        self.life: ServerLife | None = None
        self.go = asyncio.Event()
        """Set while the clients may send requests."""
        self.parked = 0
        self.finished = False
        self.postgres_trouble = False
        """True from a PostgreSQL crash until every instance succeeded again."""
        self.postgres_down = False
        self.compared: set[tuple[str, str]] = set()
        self.started = time.monotonic()

    # --- bookkeeping -------------------------------------------------------

    def log(self, message: str) -> None:
        self.settings.log(f"[{time.monotonic() - self.started:6.1f}s] {message}")

    def problem(self, message: str) -> None:
        if len(self.report.problems) < 1000:
            self.report.problems.append(message)
        self.log(f"PROBLEM: {message}")

    def lost(self, instance_id: str, checkpoint_id: str, message: str) -> None:
        self.report.lost.add((instance_id, checkpoint_id))
        self.problem(message)

    def failed(self, client: Client, kind: str, detail: str) -> None:
        self.report.failures[kind] += 1
        client.last_failure = f"{kind}: {detail}"
        if self.postgres_trouble:
            self.report.postgres_outage_failures += 1
        elif kind != CUT_OFF:
            self.problem(f"{client.instance_id}: {kind} outside a crash ({detail})")

    # --- holding the clients ----------------------------------------------

    async def proceed(self) -> bool:
        """Wait while the clients are held; False once the run is over."""
        while not self.go.is_set():
            self.parked += 1
            try:
                await self.go.wait()
            finally:
                self.parked -= 1
        return not self.finished

    async def hold(self) -> None:
        """Stop the clients before their next request and wait until all are waiting."""
        self.go.clear()
        deadline = time.monotonic() + self.settings.request_timeout + 10
        while self.parked < len(self.clients):
            if time.monotonic() > deadline:
                raise AssertionError("the clients did not stop (a request hangs?)")
            await asyncio.sleep(0.01)

    async def wait_resumed(self, since: float | None = None) -> float:
        """Wait until every client resumed with the current server (or, with
        ``since``, acknowledged a checkpoint after that time); the seconds it took."""
        started = time.monotonic()
        deadline = started + self.settings.recovery_timeout

        def pending() -> list[Client]:
            if since is None:
                return [c for c in self.clients if c.life is not self.life]
            return [c for c in self.clients if c.last_success <= since]

        while pending():
            if time.monotonic() > deadline:
                late = pending()
                self.problem(
                    f"{len(late)} instances did not "
                    f"{'resume' if since is None else 'succeed again'} within "
                    f"{self.settings.recovery_timeout:g}s, e.g. {late[0].instance_id}: "
                    f"{late[0].last_failure}"
                )
                break
            self.check_alive()
            await asyncio.sleep(0.02)
        return time.monotonic() - started

    async def load(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.report.load_seconds += seconds
        self.check_alive()

    def check_alive(self) -> None:
        code = self.life.exit_code()
        if code is not None:
            raise AssertionError(
                f"the server exited by itself with code {code}:\n"
                + "\n".join(self.life.process.log[-30:])
            )

    # --- the server and the database ---------------------------------------

    async def start_server(self, port: int, generation: int) -> ServerLife:
        settings = self.settings
        process = await asyncio.to_thread(
            ServerProcess,
            "--driver",
            settings.driver,
            "--database-url",
            settings.database_url,
            "--port",
            str(port),
            cwd=settings.workdir,
        )
        return ServerLife(process, generation)

    async def check(self, when: str, *, full: bool = False) -> None:
        expectations = {
            c.instance_id: Expectation(c.registered, frozenset(c.sent), frozenset(c.acked_set))
            for c in self.clients
        }
        started = time.monotonic()
        result = await asyncio.to_thread(
            check_database,
            StorageConfig(self.settings.driver, self.settings.database_url),
            self.settings.seed,
            expectations,
            self.compared,
            sample=None if full else self.settings.byte_sample,
            rng=self.rng,
        )
        for message in result.problems:
            self.problem(f"{when}: {message}")
        self.report.lost |= result.lost
        self.report.stored = result.stored
        self.report.stored_unacknowledged = result.stored_unacknowledged
        self.log(
            f"{when}: database holds {result.stored:,} checkpoints, "
            f"{sum(len(e.acked) for e in expectations.values()):,} acknowledged; "
            f"{result.compared:,} compared byte for byte in {time.monotonic() - started:.1f}s; "
            + ("ok" if not result.problems else f"{len(result.problems)} problems")
        )

    async def crash_server(self, number: int) -> None:
        life = self.life
        self.check_alive()
        self.go.clear()
        self.report.peak_rss = max(self.report.peak_rss, life.peak_rss())
        life.process.signal(signal.SIGKILL)
        cut_off = len(life.inflight)
        for task in list(life.inflight):
            task.cancel()
        self.report.kills += 1
        code = await asyncio.to_thread(life.process.wait)
        if code != -signal.SIGKILL:
            self.problem(f"kill {number}: the server exited with {code}, not by SIGKILL")
        await self.hold()
        started = time.monotonic()
        self.life = await self.start_server(life.address[1], life.generation + 1)
        self.log(
            f"kill {number}/{self.settings.kills}: SIGKILL with {cut_off} requests in flight; "
            f"restarted in {time.monotonic() - started:.2f}s"
        )
        problems = len(self.report.problems)
        await self.check(f"kill {number}/{self.settings.kills}")
        self.go.set()
        resumed = await self.wait_resumed()
        self.log(f"kill {number}/{self.settings.kills}: all instances resumed in {resumed:.2f}s")
        if len(self.report.problems) == problems:
            self.report.kills_survived += 1

    async def crash_postgres(self, number: int) -> None:
        cluster = self.settings.postgres
        self.check_alive()
        self.postgres_trouble = True
        failures = self.report.postgres_outage_failures
        self.postgres_down = True
        await asyncio.to_thread(cluster.stop, "immediate")
        await asyncio.sleep(self.settings.postgres_outage)
        await asyncio.to_thread(cluster.start)
        self.postgres_down = False
        back = time.monotonic()
        recovered = await self.wait_resumed(since=back)
        await self.hold()
        self.postgres_trouble = False
        self.check_alive()
        self.log(
            f"PostgreSQL crash {number}/{self.settings.postgres_kills}: "
            f"{self.report.postgres_outage_failures - failures} requests failed; every "
            f"instance succeeded again {recovered:.2f}s after PostgreSQL was back"
        )
        problems = len(self.report.problems)
        await self.check(f"PostgreSQL crash {number}/{self.settings.postgres_kills}")
        if len(self.report.problems) == problems:
            self.report.postgres_restarts += 1
        self.go.set()

    # --- the run ----------------------------------------------------------

    async def run(self) -> Report:
        settings = self.settings
        events = ["server"] * settings.kills + ["postgres"] * settings.postgres_kills
        self.rng.shuffle(events)
        weights = [self.rng.uniform(0.5, 1.5) for _ in range(len(events) + 1)]
        loads = [settings.duration * weight / sum(weights) for weight in weights]
        self.life = await self.start_server(0, 0)
        self.log(f"server on {self.life.address[0]}:{self.life.address[1]}, seed {settings.seed}")
        tasks = [asyncio.ensure_future(client.run()) for client in self.clients]
        try:
            self.go.set()
            await self.wait_resumed()
            numbers: Counter = Counter()
            for event, seconds in zip(events, loads[:-1], strict=True):
                await self.load(seconds)
                numbers[event] += 1
                if event == "server":
                    await self.crash_server(numbers[event])
                else:
                    await self.crash_postgres(numbers[event])
            await self.load(loads[-1])
            await self.hold()
            self.check_alive()
        except AssertionError as error:
            self.problem(str(error))
        finally:
            await self.stop(tasks)
        await self.check("end", full=True)
        self.report.wall_seconds = time.monotonic() - self.started
        return self.report

    async def stop(self, tasks: list[asyncio.Future]) -> None:
        """End the clients, then stop the server with SIGTERM (exit code 0 expected)."""
        if self.postgres_down:
            await asyncio.to_thread(self.settings.postgres.start)
        self.finished = True
        self.go.set()
        for task in list(self.life.inflight):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        life = self.life
        if life.exit_code() is not None:  # already reported
            await asyncio.to_thread(life.process.wait)
            return
        self.report.peak_rss = max(self.report.peak_rss, life.peak_rss())
        life.process.signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(life.process.wait, 60)
        except Exception:
            life.process.kill()
            code = "no exit within 60s"
        if code != 0:
            self.problem(
                f"the server's exit on SIGTERM: {code}\n" + "\n".join(life.process.log[-30:])
            )


def run(settings: Settings) -> Report:
    """Run the crash test and return its report (``report.ok`` says whether it passed)."""
    if settings.postgres_kills and settings.postgres is None:
        raise ValueError("PostgreSQL crashes need the cluster (Settings.postgres)")

    async def main() -> Report:
        return await Harness(settings).run()

    return asyncio.run(main())


# --- the command ----------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.reliability.crash",
        description="Kill runtara-core (and PostgreSQL) under checkpoint load and check "
        "that no acknowledged checkpoint is lost.",
    )
    parser.add_argument("--driver", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--database-url",
        help="an empty database to use (default: a new SQLite file in a temporary folder, "
        "or a throwaway PostgreSQL cluster)",
    )
    parser.add_argument("--kills", type=int, default=20, help="server SIGKILLs (20)")
    parser.add_argument(
        "--postgres-kills",
        type=int,
        default=0,
        help="PostgreSQL crashes, with the throwaway cluster only (0)",
    )
    parser.add_argument(
        "--postgres-outage", type=float, default=1.0, help="seconds PostgreSQL stays down (1)"
    )
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of load (120)")
    parser.add_argument("--clients", type=int, default=32, help="instances (32)")
    parser.add_argument("--seed", type=int, help="the states' seed (random)")
    parser.add_argument("--quiet", action="store_true", help="print the summary only")
    args = parser.parse_args(argv)
    if args.postgres_kills and (args.driver != "postgres" or args.database_url):
        parser.error("--postgres-kills needs --driver postgres without --database-url")

    with contextlib.ExitStack() as cleanup:
        workdir = Path(tempfile.mkdtemp(prefix="runtara-crash-"))
        cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
        url, cluster = args.database_url, None
        if args.driver == "sqlite" and url is None:
            url = sqlite_url(workdir)
        elif url is None:
            from tests import postgres

            bin_dir = postgres.find_bin_dir()
            if bin_dir is None:
                parser.error("PostgreSQL server binaries (pg_ctl, initdb) not found")
            cluster = postgres.Cluster(bin_dir)
            cleanup.callback(cluster.destroy)
            url = cluster.url(cluster.new_schema())
        settings = Settings(
            driver=args.driver,
            database_url=url,
            workdir=workdir,
            clients=args.clients,
            kills=args.kills,
            postgres_kills=args.postgres_kills,
            duration=args.duration,
            postgres=cluster,
            postgres_outage=args.postgres_outage,
            log=(lambda line: None) if args.quiet else _print_progress,
        )
        if args.seed is not None:
            settings.seed = args.seed
        report = run(settings)
    print(report.summary())
    return 0 if report.ok else 1


def _print_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
