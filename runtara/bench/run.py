"""Running the benchmark: servers up, load on, figures taken, servers down.

Every scenario runs on the server under test and on each baseline, one after
the other, so that the ratios compare measurements taken minutes apart at
most. A measurement: start the server, start the load (client processes, or
the storage threads), let it warm up, sample the CPU times, open the
measured window, close it, sample again, stop.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable

import attrs

from runtara import errors
from runtara.bench import cpu, load, report, scenarios, servers
from runtara.bench.clients import ClientGroup
from runtara.bench.progress import Progress, describe
from runtara.bench.storage import StorageLoad
from runtara.bench.tally import LoadResult
from runtara.client.connection import Connection
from runtara.config import StorageConfig
from runtara.protocol import management_pb2 as mpb
from runtara.storage import selection

BASELINES = ("echo", "naive", "storage")
SHORTEST_TICK = 0.1
"""Seconds: a progress line about less would only show noise."""
IDLE_SETTLE = 2.0
"""Seconds the idle connections are held before the memory is read (the
handshakes' garbage settles)."""


@attrs.frozen
class Options:
    scenarios: tuple[str, ...] = ("checkpoint",)
    baselines: tuple[str, ...] = BASELINES
    connections: int = 32
    state_size: int | None = None
    """Checkpoint state bytes for every scenario; None: each scenario's own
    (see :func:`scenarios.state_size`)."""
    warmup: float = 2.0
    duration: float | None = 10.0
    count: int | None = None
    runs: int = 1
    driver: str | None = None
    database_url: str | None = None
    server: tuple[str, int] | None = None
    """Target this running server instead of starting one."""
    max_concurrent: int = 32
    server_processes: int = 1
    """``--processes`` of the runtara-core server started: one by default, as the
    echo baseline, so that the two compare at equal process counts."""
    client_processes: int = 1
    """Processes the connections are spread over (at most ``connections``)."""
    idle_connections: int = 1000
    progress: bool = False
    """Lines on standard error while it runs."""


@attrs.frozen
class Measurement:
    name: str
    scenario: str
    baseline: str | None
    """None: the server under test."""


def plan(options: Options) -> list[Measurement]:
    """What one run measures, in order: for each scenario, its network baselines,
    the scenario itself and its storage baseline (``idle`` has no baselines)."""
    measurements = []
    for scenario in options.scenarios:
        if scenario == "idle":
            measurements.append(Measurement("idle", "idle", None))
            continue
        kinds = [b for b in options.baselines if b != "storage"] + [None]
        if "storage" in options.baselines:
            kinds.append("storage")
        measurements += [
            Measurement(report.result_name(scenario, kind), scenario, kind) for kind in kinds
        ]
    return measurements


def bench(options: Options) -> dict:
    """Every measurement of :func:`plan`, ``runs`` times; the medians and their ratios."""
    progress = Progress(options.progress)
    measurements = plan(options)
    runs: list[dict[str, report.Figures]] = []
    for number in range(options.runs):
        progress.say(f"run {number + 1} of {options.runs}")
        runs.append({m.name: _measure(m, options, progress) for m in measurements})
    medians = {m.name: report.median([run[m.name] for run in runs]) for m in measurements}
    return {
        "runs": runs,
        "median": medians,
        "ratios": report.ratios(medians, options.baselines),
    }


def _measure(measurement: Measurement, options: Options, progress: Progress) -> report.Figures:
    name, baseline = measurement.name, measurement.baseline
    if baseline == "storage":
        return _measure_storage(measurement, options, progress)
    if baseline is not None:
        progress.say(f"{name}: starting the {baseline} server")
        return measure_remote(
            measurement,
            lambda: servers.echo(options.max_concurrent) if baseline == "echo" else servers.naive(),
            options,
            progress,
        )
    if options.server is not None:
        return measure_remote(measurement, None, options, progress)
    with tempfile.TemporaryDirectory(prefix="runtara-bench-") as folder:
        progress.say(f"{name}: starting runtara-core")
        if name == "idle":
            server = servers.runtara(server_arguments(options, folder))
            try:
                return _measure_idle(server, options, progress)
            finally:
                server.stop()
        return measure_remote(
            measurement,
            lambda: servers.runtara(server_arguments(options, folder)),
            options,
            progress,
        )


def server_arguments(options: Options, folder: str) -> list[str]:
    """The runtara-core flags of the server the bench starts (its database in
    ``folder`` unless a URL is configured)."""
    url = options.database_url or f"sqlite:{os.path.join(folder, 'bench.db')}"
    args = ["--database-url", url, "--max-concurrent", str(options.max_concurrent)]
    if options.driver:
        args += ["--driver", options.driver]
    args += ["--processes", str(options.server_processes)]
    return args


async def counters(address: tuple[str, int] | None, token: str = "") -> dict[str, float]:
    """A server's ``GetStats`` counters through its management service ({} without one)."""
    if address is None:
        return {}
    connection = await Connection.open(*address, timeout=10)
    try:
        request = mpb.RpcRequest(token=token, get_stats=mpb.GetStatsRequest())
        reply = await connection.call(request, mpb.RpcResponse, timeout=10)
        if reply.HasField("error"):
            raise errors.AccessDenied(f"GetStats: {reply.error.code}: {reply.error.message}")
        return dict(reply.get_stats.counters)
    finally:
        await connection.close(wait=0.2)


def measure_remote(
    measurement: Measurement,
    start_server: Callable[[], servers.ServerProcess] | None,
    options: Options,
    progress: Progress,
) -> report.Figures:
    """Measure over QUIC: the server ``start_server`` starts (and this stops), or
    the one of ``options.server`` when it is None."""
    state_size = scenarios.state_size(measurement.scenario, options.state_size)
    peak: dict = {}

    async def measure() -> tuple[LoadResult, cpu.Use, dict]:
        # the client processes start up while the server does
        group = await ClientGroup.spawn(options.client_processes)
        try:
            server = None if start_server is None else await asyncio.to_thread(start_server)
            try:
                outcome = await _load(measurement, group, server, state_size, options, progress)
                if server is not None:
                    peak["server_peak_rss_mib"] = servers.tree_memory(server.pid) / 2**20
                return outcome
            finally:
                if server is not None:
                    await asyncio.to_thread(server.stop)
        except BaseException:
            await group.abort()
            raise

    result, use, extra = asyncio.run(measure())
    return _figures(measurement, result, use, state_size, **extra, **peak)


async def _load(
    measurement: Measurement,
    group: ClientGroup,
    server: servers.ServerProcess | None,
    state_size: int,
    options: Options,
    progress: Progress,
) -> tuple[LoadResult, cpu.Use, dict]:
    """Start ``group``'s load on the server (``options.server`` when None), warm it
    up and measure; what was measured, the CPU used and the storage's rows per
    commit (when the server has a management service)."""
    address = options.server if server is None else server.address
    management = None if server is None else server.management
    token = "" if server is None else server.token
    before = await counters(management, token)
    processes = options.client_processes
    progress.say(
        f"{measurement.name}: {options.connections} connections from {processes} "
        f"client process{'es' if processes > 1 else ''} connect and prepare"
    )
    await _waiting(
        f"{measurement.name}: connecting",
        group.start(
            address,
            measurement.scenario,
            connections=options.connections,
            state_size=state_size,
            count=options.count,
        ),
        progress,
    )
    pid = None if server is None else server.pid
    result, use = await _drive(measurement.name, group, pid, options, progress)
    after = await counters(management, token)
    extra = {}
    commits = after.get("storage_commits", 0) - before.get("storage_commits", 0)
    if commits:
        transactions = after["storage_transactions"] - before["storage_transactions"]
        extra["rows_per_commit"] = transactions / commits
    extra.update(_round_trips(before, after, "storage_"))
    return result, use, extra


def _measure_storage(
    measurement: Measurement, options: Options, progress: Progress
) -> report.Figures:
    state_size = scenarios.state_size(measurement.scenario, options.state_size)
    with tempfile.TemporaryDirectory(prefix="runtara-bench-") as folder:
        url = options.database_url or f"sqlite:{os.path.join(folder, 'bench.db')}"
        storage = selection.open_driver(
            StorageConfig(driver=options.driver, database_url=url), workers=options.connections
        )
        try:
            storage.migrate()
            progress.say(f"{measurement.name}: {options.connections} threads prepare")
            work = StorageLoad(
                storage,
                measurement.scenario,
                threads=options.connections,
                state_size=state_size,
                count=options.count,
            )

            async def measure() -> tuple[LoadResult, cpu.Use]:
                await work.start()
                try:
                    return await _drive(measurement.name, work, os.getpid(), options, progress)
                except BaseException:
                    await work.abort()
                    raise

            result, use = asyncio.run(measure())
            stats = storage.stats()
        finally:
            storage.close()
    extra = {}
    if stats.get("commits"):
        extra["rows_per_commit"] = stats["transactions"] / stats["commits"]
    extra.update(_round_trips({}, stats, ""))
    return _figures(measurement, result, use, state_size, **extra)


def _round_trips(before: dict, after: dict, prefix: str) -> dict[str, float]:
    """``round_trips_per_op`` from a driver's counters that has them (PostgreSQL)."""
    operations = after.get(f"{prefix}operations", 0) - before.get(f"{prefix}operations", 0)
    if f"{prefix}round_trips" not in after or not operations:
        return {}
    trips = after[f"{prefix}round_trips"] - before.get(f"{prefix}round_trips", 0)
    return {"round_trips_per_op": trips / operations}


def _figures(
    measurement: Measurement, result: LoadResult, use: cpu.Use, state_size: int, **extra
) -> report.Figures:
    return report.figures(
        measurement.name,
        result,
        use,
        scenario=measurement.scenario,
        baseline=measurement.baseline,
        state_size=state_size,
        **extra,
    )


async def _drive(
    name: str,
    work: ClientGroup | StorageLoad,
    server_pid: int | None,
    options: Options,
    progress: Progress,
) -> tuple[LoadResult, cpu.Use]:
    """Warm ``work`` (a ClientGroup or a StorageLoad) up, measure one window;
    what it measured and the CPU used meanwhile."""
    await phase(f"{name}: warm-up ", work, server_pid, progress, seconds=options.warmup)
    start = cpu.sample(server_pid, work.pids)
    await work.record()
    if options.count is None:
        await phase(f"{name}: measured", work, server_pid, progress, seconds=options.duration)
    else:
        await phase(f"{name}: measured", work, server_pid, progress, until=work.counted())
    end = cpu.sample(server_pid, work.pids)
    result = await work.finish()
    use = cpu.Use.between(start, end)
    progress.say(
        f"{name}: {result.operations:,} operations in {result.seconds:.1f} s, "
        f"{result.errors:,} failed; {describe(use)}"
    )
    for note in cpu.saturation(use).values():
        progress.say(f"{name}: {note}")
    return result, use


async def phase(
    label: str,
    work: ClientGroup | StorageLoad,
    server_pid: int | None,
    progress: Progress,
    *,
    seconds: float | None = None,
    until: Awaitable | None = None,
) -> None:
    """Let the load run for ``seconds``, or until ``until`` is done, with a
    progress line each second (operations, failures, CPU)."""
    ending = None if until is None else asyncio.ensure_future(until)
    deadline = None if seconds is None else time.monotonic() + seconds
    if progress.enabled:
        progress.begin(label, (await work.totals())[0])
        last = cpu.sample(server_pid, work.pids)
    try:
        while True:
            step = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if step <= 0:
                return
            if ending is None:
                await asyncio.sleep(step)
            elif (await asyncio.wait({ending}, timeout=step))[0]:
                return
            if progress.enabled and step >= SHORTEST_TICK:
                now = cpu.sample(server_pid, work.pids)
                progress.tick(*(await work.totals()), cpu.Use.between(last, now))
                last = now
    finally:
        if ending is not None:
            ending.cancel()


async def _waiting(label: str, awaitable: Awaitable, progress: Progress):
    """``awaitable``'s result, saying each second that it is still awaited."""
    task = asyncio.ensure_future(awaitable)
    began = time.monotonic()
    try:
        while not (await asyncio.wait({task}, timeout=1.0))[0]:
            progress.say(f"  {label} {time.monotonic() - began:5.1f} s")
    except BaseException:
        task.cancel()
        raise
    return task.result()


def _measure_idle(
    server: servers.ServerProcess, options: Options, progress: Progress
) -> report.Figures:
    count = options.idle_connections
    before = servers.tree_memory(server.pid, "VmRSS")
    progress.say(f"idle: opening {count} connections")

    async def hold():
        opened = await load.open_idle(server.address, count)
        await asyncio.sleep(IDLE_SETTLE)
        rss = servers.tree_memory(server.pid, "VmRSS")
        await asyncio.gather(*(c.close(wait=0.2) for c in opened), return_exceptions=True)
        return rss

    during = asyncio.run(hold())
    return report.Figures(
        name="idle",
        ops_per_second=0.0,
        operations=count,
        errors=0,
        p50_ms=0.0,
        p90_ms=0.0,
        p99_ms=0.0,
        max_ms=0.0,
        server_peak_rss_mib=servers.tree_memory(server.pid) / 2**20,
        rss_per_connection_kib=(during - before) / count / 1024,
        scenario="idle",
    )
