"""The server's Prometheus metrics: the metric objects, the calls that update
them, and the text ``/metrics`` answers with.

Nothing is measured until :func:`setup` is called (the server calls it when it
serves HTTP, ``--http-addr``): until then every hook below returns at once, so
the tools, and a server without the endpoint, pay nothing and write nothing.

The hooks are plain functions (:func:`request_served`,
:func:`checkpoint_stored`, :func:`commit_finished` ...) called where the thing
happens (the server's core, the handlers, the drivers, the launcher), on
whatever thread that is. This module imports nothing of the server, the
operator tools or the drivers, so every layer may call it.

Figures come three ways:

- counters and histograms, updated by the hooks as things happen;
- the serving figures (connections, running and parked requests ...) and the
  process's CPU time and memory, sampled from the server by
  :meth:`Metrics.sample`: before every scrape in the process that answers it,
  and, with several server processes, every second in each of them;
- what the storage holds, read at scrape time in one read transaction: the
  instances (by status, and how long the most silent running one has been
  silent), the queues (running, waiting, paused, at their rate limit) and the
  schedules (ticks, skipped ticks, the last and next tick).

Several server processes: when the variable ``PROMETHEUS_MULTIPROC_DIR`` names
a folder (``runtara-core --processes N`` creates one and hands it to its
children), prometheus_client keeps every value in that folder, one file per
process and kind, and whichever process answers a scrape merges them:
counters and histograms summed over every process that ever ran (so a
restarted process loses nothing), gauges summed over the live ones. The
variable must be in the process's environment when it starts, before
prometheus_client is imported.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import prometheus_client
from prometheus_client import exposition, multiprocess, values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from runtara import clock, errors, records
from runtara.storage import queues as stored_queues

if TYPE_CHECKING:
    from runtara.storage.base import StorageDriver

logger = logging.getLogger(__name__)

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus_client's variable naming the folder the server processes share."""

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Seconds; a durable commit takes a few milliseconds, a read well under one."""
WRITES_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

clock_seconds = time.perf_counter
"""The clock the ``started`` arguments of the hooks are read from."""


class Metrics:
    """The metric objects of one server process, and its exposition.

    ``figures`` returns the server's serving figures (the keys of
    ``ServerCore.snapshot``), ``storage_healthy`` whether the storage's last
    operations succeeded; ``storage`` is read at scrape time for the
    instances, queues and schedules. ``folder`` is the shared folder of
    several server processes, or None for a server of one process.
    """

    def __init__(
        self,
        *,
        figures: Callable[[], Mapping[str, float]],
        storage_healthy: Callable[[], bool],
        storage: StorageDriver,
        folder: str | None,
    ) -> None:
        self.folder = folder
        self._figures = figures
        self._storage_healthy = storage_healthy
        self._sample_lock = threading.Lock()
        self._cpu_counted = 0.0
        objects: list[Collector] = []

        def made(kind, *args: Any, **kwargs: Any):
            # not in prometheus_client's global registry: this one's, below
            metric = kind(*args, registry=None, **kwargs)
            objects.append(metric)
            return metric

        # --- requests -----------------------------------------------------
        self.requests = made(
            prometheus_client.Counter,
            "runtara_requests",
            "Requests answered, by protocol, operation and outcome: ok; error (the "
            "operation's own error code, or a refused registration); superseded; "
            "overloaded; unavailable (shutting down); unauthenticated; empty_request",
            ["protocol", "operation", "outcome"],
        )
        self.request_seconds = made(
            prometheus_client.Histogram,
            "runtara_request_duration_seconds",
            "Time a worker spent on a request: validation, the storage transaction "
            "and its commit, the reply's encoding",
            ["protocol", "operation"],
            buckets=LATENCY_BUCKETS,
        )
        self.connections_opened = made(
            prometheus_client.Counter,
            "runtara_connections",
            "QUIC connections opened, by protocol and outcome (accepted, refused)",
            ["protocol", "outcome"],
        )
        # --- serving figures, sampled ---------------------------------------
        self.gauges = {
            figure: made(prometheus_client.Gauge, name, help_text, multiprocess_mode="livesum")
            for figure, name, help_text in (
                ("connections", "runtara_open_connections", "QUIC connections open"),
                ("running", "runtara_requests_running", "Requests running on a worker"),
                (
                    "parked",
                    "runtara_requests_parked",
                    "Requests admitted and waiting for a worker (the admission queue)",
                ),
                (
                    "sleeping",
                    "runtara_requests_sleeping",
                    "Durable sleeps whose reply is waiting for its timer",
                ),
                (
                    "admitted_bytes",
                    "runtara_requests_admitted_bytes",
                    "Payload bytes of the requests running or parked",
                ),
                (
                    "buffered_bytes",
                    "runtara_requests_buffered_bytes",
                    "Bytes of requests still arriving",
                ),
            )
        }
        self.storage_up = made(
            prometheus_client.Gauge,
            "runtara_storage_healthy",
            "1 while the storage's last operations succeeded, 0 while they fail "
            "(in any server process)",
            multiprocess_mode="livemin",
        )
        self.processes = made(
            prometheus_client.Gauge,
            "runtara_server_processes",
            "Server processes running",
            multiprocess_mode="livesum",
        )
        self.memory = made(
            prometheus_client.Gauge,
            "runtara_server_resident_memory_bytes",
            "Resident memory of the server processes",
            multiprocess_mode="livesum",
        )
        self.cpu = made(
            prometheus_client.Counter,
            "runtara_server_cpu_seconds",
            "CPU time (user and system) of the server processes",
        )
        # --- storage -------------------------------------------------------
        self.checkpoints = made(
            prometheus_client.Counter,
            "runtara_checkpoints_stored",
            "Checkpoints stored (a Checkpoint of an id that holds a state already stores nothing)",
        )
        self.checkpoint_bytes = made(
            prometheus_client.Counter,
            "runtara_checkpoint_bytes_stored",
            "Bytes of the states of the checkpoints stored",
        )
        self.commit_seconds = made(
            prometheus_client.Histogram,
            "runtara_storage_commit_duration_seconds",
            "Time of a committed write transaction, from its start to the end of its "
            "commit, by driver",
            ["driver"],
            buckets=LATENCY_BUCKETS,
        )
        self.writes_per_commit = made(
            prometheus_client.Histogram,
            "runtara_storage_writes_per_commit",
            "Requests' writes carried by one commit (SQLite commits concurrent "
            "writers together; PostgreSQL commits each on its own)",
            ["driver"],
            buckets=WRITES_BUCKETS,
        )
        self.commit_failures = made(
            prometheus_client.Counter,
            "runtara_storage_commit_failures",
            "SQLite write groups whose commit failed (their requests were told so)",
            ["driver"],
        )
        # --- launches and wakes ----------------------------------------------
        self.launches = made(
            prometheus_client.Counter,
            "runtara_launches",
            "Launch attempts of instances by the launcher, by outcome (started, or "
            "failed: the command could not be started)",
            ["outcome"],
        )
        self.queue_starts = made(
            prometheus_client.Counter,
            "runtara_queue_started",
            "Instance processes the launcher started, by the instance's queue",
            ["queue"],
        )
        self.launch_ends = made(
            prometheus_client.Counter,
            "runtara_launch_exits",
            "Instance processes that ended, by what followed: finished, suspended, "
            "relaunch, failed (attempts spent), stopped, taken over",
            ["outcome"],
        )
        self.wakes = made(
            prometheus_client.Counter,
            "runtara_wakes",
            "Runs of --wake-command for due sleepers, by outcome (started, failed)",
            ["outcome"],
        )
        self._children: dict[tuple, object] = {}
        self.registry = prometheus_client.CollectorRegistry()
        if folder is None:
            for metric in objects:
                self.registry.register(metric)
        else:
            self.registry.register(_ProcessFiles(folder))
        self.registry.register(_Stored(storage))
        self.processes.set(1)

    def child(self, metric, *labels: str):
        """``metric.labels(*labels)``, looked up once (labels() takes a lock and
        builds a key; the hot path only reads a dict)."""
        key = (id(metric), *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def sample(self) -> None:
        """Set this process's sampled figures from the server and the system."""
        with self._sample_lock:
            figures = self._figures()
            for name, gauge in self.gauges.items():
                gauge.set(figures.get(name, 0))
            self.storage_up.set(1 if self._storage_healthy() else 0)
            used = time.process_time()
            self.cpu.inc(max(0.0, used - self._cpu_counted))
            self._cpu_counted = used
            self.memory.set(_resident_bytes())

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition for a scrape with this ``Accept`` header: (body, content type)."""
        self.sample()
        encoder, content_type = exposition.choose_encoder(accept or "")
        return encoder(self.registry), content_type


class _ProcessFiles(multiprocess.MultiProcessCollector):
    """Every server process's values from the shared folder, without the live
    gauges of processes that are gone (their last values would stay in the sums)."""

    _PID = re.compile(r"gauge_live\w+?_(\d+)\.db$")

    def __init__(self, folder: str) -> None:
        super().__init__(None, folder)
        self._folder = folder

    def collect(self):
        for path in glob.glob(os.path.join(self._folder, "gauge_live*.db")):
            match = self._PID.search(path)
            if match and not _alive(int(match.group(1))):
                multiprocess.mark_process_dead(int(match.group(1)), self._folder)
        return super().collect()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Stored(Collector):
    """What the storage holds, read at scrape time in one read transaction: the
    instances by status (one indexed count per status) and the longest silence
    of a running one; every queue's figures (one grouped count) and whether a
    rate-limited one is at its limit (one indexed count per such queue); every
    schedule's row."""

    def __init__(self, storage: StorageDriver) -> None:
        self._storage = storage

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        now = clock.utc_now()
        try:
            stored = self._storage.run(lambda tx: _read_stored(tx, now), write=False)
        except errors.StorageError as error:
            logger.warning("metrics: cannot read the storage's figures: %s", error)
            return
        by_status = GaugeMetricFamily(
            "runtara_instances", "Stored instances, by status", labels=["status"]
        )
        for status, count in stored.counts.items():
            by_status.add_metric([status.value], count)
        yield by_status
        silence = 0.0
        most_silent = stored.most_silent
        if most_silent is not None:
            last = most_silent.last_activity_at or most_silent.started_at
            silence = max(0.0, (now - (last or most_silent.created_at)).total_seconds())
        yield GaugeMetricFamily(
            "runtara_running_instances_max_silence_seconds",
            "Seconds since the running instance that has been silent longest sent its last "
            "request (0 when none runs)",
            value=silence,
        )
        yield from _queue_families(stored.queues, stored.rate_limited)
        yield from _schedule_families(stored.schedules)


@attrs.frozen
class _StoredFigures:
    counts: dict[records.InstanceStatus, int]
    most_silent: records.Instance | None
    queues: list[records.QueueView]
    rate_limited: dict[str, bool]
    """By queue with a rate limit: whether it is reached (a due launch waits for it)."""
    schedules: list[records.Schedule]


def _read_stored(tx, now) -> _StoredFigures:
    counts = {status: tx.count_instances(status=status) for status in records.InstanceStatus}
    silent = tx.list_stale_instances(now, 1)
    views = stored_queues.list_queues(tx, now)
    rate_limited = {
        view.queue.name: tx.count_queue_starts(view.queue.name, now) >= view.queue.rate_limit
        for view in views
        if view.queue.rate_limit is not None
    }
    return _StoredFigures(
        counts, silent[0] if silent else None, views, rate_limited, tx.list_schedules()
    )


def _queue_families(
    views: list[records.QueueView], rate_limited: dict[str, bool]
) -> Iterator[GaugeMetricFamily]:
    label = ["queue"]
    running = GaugeMetricFamily(
        "runtara_queue_running",
        "Launches of the queue claimed by a launcher (being started or running)",
        labels=label,
    )
    waiting = GaugeMetricFamily(
        "runtara_queue_waiting",
        "Launches of the queue waiting to be claimed: due now, or due at a later time "
        "(a delay, a back-off)",
        labels=label,
    )
    due = GaugeMetricFamily(
        "runtara_queue_due",
        "Launches of the queue due now and not claimed yet (held back by its limits, "
        "its pause, or the launchers' --max-running)",
        labels=label,
    )
    paused = GaugeMetricFamily(
        "runtara_queue_paused", "1 while the queue is paused, else 0", labels=label
    )
    limited = GaugeMetricFamily(
        "runtara_queue_rate_limited",
        "1 while the queue's rate limit is reached (no launch of it is claimed until a "
        "start ages out), else 0; only for queues with a rate limit",
        labels=label,
    )
    for view in views:
        name, figures = [view.queue.name], view.figures
        running.add_metric(name, figures.running)
        waiting.add_metric(name, figures.due + figures.later)
        due.add_metric(name, figures.due)
        paused.add_metric(name, 1 if view.queue.paused else 0)
        if view.queue.name in rate_limited:
            limited.add_metric(name, 1 if rate_limited[view.queue.name] else 0)
    yield from (running, waiting, due, paused, limited)


def _schedule_families(
    schedules: list[records.Schedule],
) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
    label = ["schedule"]
    ticks = CounterMetricFamily(
        "runtara_schedule_ticks",
        "Instances the schedule started (counted since it was created or last replaced)",
        labels=label,
    )
    skipped = CounterMetricFamily(
        "runtara_schedule_skipped",
        "Ticks of the schedule that started nothing: its previous instance still ran, or "
        "the tick was missed and not caught up",
        labels=label,
    )
    last_tick = GaugeMetricFamily(
        "runtara_schedule_last_tick_timestamp_seconds",
        "Unix time of the schedule's last tick (absent before its first)",
        labels=label,
    )
    next_tick = GaugeMetricFamily(
        "runtara_schedule_next_tick_timestamp_seconds",
        "Unix time of the schedule's next tick",
        labels=label,
    )
    paused = GaugeMetricFamily(
        "runtara_schedule_paused", "1 while the schedule is paused, else 0", labels=label
    )
    for schedule in schedules:
        name = [schedule.name]
        ticks.add_metric(name, schedule.ticks)
        skipped.add_metric(name, schedule.skipped)
        if schedule.last_tick_at is not None:
            last_tick.add_metric(name, schedule.last_tick_at.timestamp())
        next_tick.add_metric(name, schedule.next_tick_at.timestamp())
        paused.add_metric(name, 1 if schedule.paused else 0)
    yield from (ticks, skipped, last_tick, next_tick, paused)


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE_SIZE


_active: Metrics | None = None


def setup(
    *,
    figures: Callable[[], Mapping[str, float]],
    storage_healthy: Callable[[], bool],
    storage: StorageDriver,
    environ: Mapping[str, str] = os.environ,
) -> Metrics:
    """Start measuring in this process, and return its metrics.

    Raises :class:`runtara.errors.ConfigError` if ``PROMETHEUS_MULTIPROC_DIR`` is
    set but is not a folder, or was set only after prometheus_client was imported
    (its values would stay private to this process).
    """
    global _active
    prometheus_client.disable_created_metrics()  # multi-process mode has none either
    folder = environ.get(MULTIPROCESS_DIR) or None
    if folder is not None:
        if not os.path.isdir(folder):
            raise errors.ConfigError(f"{MULTIPROCESS_DIR}={folder!r} is not a folder")
        if not getattr(values.ValueClass, "_multiprocess", False):
            raise errors.ConfigError(
                f"{MULTIPROCESS_DIR} was set after prometheus_client was imported: set it "
                "in the environment the server process starts with"
            )
    _active = Metrics(
        figures=figures, storage_healthy=storage_healthy, storage=storage, folder=folder
    )
    return _active


# --- hooks: each returns at once until setup() was called ---------------------


def request_served(protocol: str, operation: str, outcome: str, started: float) -> None:
    """A worker ran a request (``started`` read from :data:`clock_seconds`)."""
    active = _active
    if active is not None:
        elapsed = clock_seconds() - started
        active.child(active.requests, protocol, operation, outcome).inc()
        active.child(active.request_seconds, protocol, operation).observe(elapsed)


def request_refused(protocol: str, operation: str, code: str) -> None:
    """The server answered a request with ``code`` without running it."""
    active = _active
    if active is not None:
        active.child(active.requests, protocol, operation, code.lower()).inc()


def connection_opened(protocol: str, accepted: bool) -> None:
    active = _active
    if active is not None:
        outcome = "accepted" if accepted else "refused"
        active.child(active.connections_opened, protocol, outcome).inc()


def checkpoint_stored(size: int) -> None:
    """A Checkpoint stored a new state of ``size`` bytes."""
    active = _active
    if active is not None:
        active.checkpoints.inc()
        active.checkpoint_bytes.inc(size)


def commit_finished(driver: str, started: float, writes: int) -> None:
    """A write transaction begun at ``started`` committed, carrying ``writes``
    requests' writes."""
    active = _active
    if active is not None:
        elapsed = clock_seconds() - started
        active.child(active.commit_seconds, driver).observe(elapsed)
        active.child(active.writes_per_commit, driver).observe(writes)


def commit_failed(driver: str) -> None:
    active = _active
    if active is not None:
        active.child(active.commit_failures, driver).inc()


@contextlib.contextmanager
def commit_timer(driver: str, write: bool) -> Iterator[None]:
    """Around one transaction of one request (``write`` false: nothing is
    measured): ended without an exception, it counts as committed
    (:func:`commit_finished`). One that raises is not counted here: inside the
    driver a refusal and a failure look alike."""
    if _active is None or not write:
        yield
        return
    started = clock_seconds()
    yield
    commit_finished(driver, started, 1)


def launch_attempted(started: bool) -> None:
    """The launcher started an instance's process, or could not."""
    active = _active
    if active is not None:
        active.child(active.launches, "started" if started else "failed").inc()


def queue_started(queue: str) -> None:
    """The launcher started the process of an instance of ``queue``."""
    active = _active
    if active is not None:
        active.child(active.queue_starts, queue).inc()


def launch_ended(outcome: str) -> None:
    """An instance's process ended, and ``outcome`` follows (see
    ``runtara.storage.launches.exited``)."""
    active = _active
    if active is not None:
        active.child(active.launch_ends, outcome).inc()


def wake_attempted(started: bool) -> None:
    """The wake scheduler ran its command for a due sleeper, successfully or not."""
    active = _active
    if active is not None:
        active.child(active.wakes, "started" if started else "failed").inc()
