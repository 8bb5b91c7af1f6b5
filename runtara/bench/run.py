"""Running the benchmark: servers up, load on, figures taken, servers down."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile

import attrs

from runtara.bench import load, report, servers
from runtara.bench.storage import run_storage
from runtara.client.connection import Connection
from runtara.config import StorageConfig
from runtara.protocol import management_pb2 as mpb
from runtara.storage import selection

BASELINES = ("echo", "naive", "storage")


@attrs.frozen
class Options:
    scenarios: tuple[str, ...] = ("checkpoint",)
    baselines: tuple[str, ...] = BASELINES
    connections: int = 32
    state_size: int = 1024
    warmup: float = 2.0
    duration: float | None = 10.0
    count: int | None = None
    runs: int = 1
    driver: str | None = None
    database_url: str | None = None
    server: tuple[str, int] | None = None
    """Target this running server instead of starting one."""
    max_concurrent: int = 32
    idle_connections: int = 1000
    progress: bool = False


def _run(coroutine):
    # The client always runs on asyncio's own loop, the same for every
    # measurement (uvloop as an aioquic client loses concurrent handshakes).
    return asyncio.run(coroutine)


async def _counters(address: tuple[str, int] | None) -> dict[str, float]:
    if address is None:
        return {}
    connection = await Connection.open(*address, timeout=10)
    try:
        reply = await connection.call(
            mpb.RpcRequest(get_stats=mpb.GetStatsRequest()), mpb.RpcResponse, timeout=10
        )
        return dict(reply.get_stats.counters)
    finally:
        await connection.close(wait=0.2)


def _storage_args(options: Options, folder: str) -> list[str]:
    url = options.database_url or f"sqlite:{os.path.join(folder, 'bench.db')}"
    args = ["--database-url", url, "--max-concurrent", str(options.max_concurrent)]
    if options.driver:
        args += ["--driver", options.driver]
    return args


def _measure_remote(
    name: str, address, pid: int | None, management, options: Options
) -> report.Figures:
    samples: dict[str, float] = {}

    def on_window(phase: str) -> None:
        if pid is not None:
            samples[phase] = servers.cpu_seconds(pid)

    before = _run(_counters(management))
    result = _run(
        load.run_load(
            address,
            "checkpoint" if name in ("echo", "naive") else name,
            connections=options.connections,
            state_size=options.state_size,
            warmup=options.warmup,
            duration=options.duration,
            count=options.count,
            on_window=on_window,
            progress=options.progress,
        )
    )
    after = _run(_counters(management))
    extra: dict[str, float | None] = {}
    if pid is not None and result.operations:
        extra["server_cpu_us_per_op"] = (
            (samples["end"] - samples["start"]) / result.operations * 1e6
        )
        extra["server_peak_rss_mib"] = servers.memory(pid) / 2**20
    commits = after.get("storage_commits", 0) - before.get("storage_commits", 0)
    if commits:
        extra["rows_per_commit"] = (
            after["storage_transactions"] - before["storage_transactions"]
        ) / commits
    return report.figures(name, result, **extra)


def _measure(name: str, options: Options) -> report.Figures:
    if name in BASELINES[:2]:
        server = servers.echo(options.max_concurrent) if name == "echo" else servers.naive()
        try:
            return _measure_remote(name, server.address, server.pid, None, options)
        finally:
            server.stop()
    if name == "storage":
        with tempfile.TemporaryDirectory(prefix="runtara-bench-") as folder:
            url = options.database_url or f"sqlite:{os.path.join(folder, 'bench.db')}"
            storage = selection.open_driver(
                StorageConfig(driver=options.driver, database_url=url), workers=options.connections
            )
            try:
                storage.migrate()
                result = run_storage(
                    storage,
                    threads=options.connections,
                    state_size=options.state_size,
                    warmup=options.warmup,
                    duration=options.duration,
                    count=options.count,
                )
                stats = storage.stats()
            finally:
                storage.close()
            extra = {}
            if stats.get("commits"):
                extra["rows_per_commit"] = stats["transactions"] / stats["commits"]
            return report.figures("storage", result, **extra)
    if options.server is not None:
        return _measure_remote(name, options.server, None, None, options)
    with tempfile.TemporaryDirectory(prefix="runtara-bench-") as folder:
        server = servers.runtara(_storage_args(options, folder))
        try:
            if name == "idle":
                return _measure_idle(server, options)
            return _measure_remote(name, server.address, server.pid, server.management, options)
        finally:
            server.stop()


def _measure_idle(server: servers.ServerProcess, options: Options) -> report.Figures:
    count = options.idle_connections
    before = servers.memory(server.pid, "VmRSS")

    async def hold():
        opened = await load.open_idle(server.address, count)
        await asyncio.sleep(2)  # let the handshakes' garbage settle
        rss = servers.memory(server.pid, "VmRSS")
        await asyncio.gather(*(c.close(wait=0.2) for c in opened), return_exceptions=True)
        return rss

    during = _run(hold())
    return report.Figures(
        name="idle",
        ops_per_second=0.0,
        operations=count,
        errors=0,
        p50_ms=0.0,
        p90_ms=0.0,
        p99_ms=0.0,
        max_ms=0.0,
        server_peak_rss_mib=servers.memory(server.pid) / 2**20,
        rss_per_connection_kib=(during - before) / count / 1024,
    )


def bench(options: Options) -> dict:
    """Every scenario and baseline, ``runs`` times; the medians and their ratios."""
    names = [*(b for b in options.baselines if b != "storage"), *options.scenarios]
    if "storage" in options.baselines:
        names.append("storage")
    runs: list[dict[str, report.Figures]] = []
    for number in range(options.runs):
        if options.progress:
            sys.stderr.write(f"run {number + 1} of {options.runs}\n")
        runs.append({name: _measure(name, options) for name in names})
    medians = {name: report.median([run[name] for run in runs]) for name in names}
    return {
        "runs": runs,
        "median": medians,
        "ratios": report.ratios(medians, options.baselines),
    }
