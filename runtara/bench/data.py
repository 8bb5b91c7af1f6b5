"""The ``data`` scenario: what the server's work costs once the store is large.

One run measures the same things on an empty store and, after loading the
data set (:mod:`runtara.bench.dataset`), on the loaded one:

- checkpoint throughput and latency of a runtara-core server on the store
  (QUIC clients, as the ``checkpoint`` scenario), its launcher ticking: the
  median of ``--runs`` measurements;
- one launcher tick's store work, each part timed on its own: the lapsed
  launches looked after, the sleepers woken (the wake scheduler), the due
  launches claimed; and the stale-instance check;
- the operators' reads: ``instances`` pages (the first, the following ones by
  cursor, filtered by tenant and by status), the console's list page, and
  ``show`` of one instance;

then prunes every finished instance while the checkpoint load runs again,
for the instances deleted per second and the checkpoints' latency meanwhile.

The data set's clock runs :data:`AHEAD` ahead of the server's: the server's
own launcher scans the loaded tables at every tick during the checkpoint
measurements but finds nothing due (it would start processes), while the
ticks measured here run at the data set's time, when its pending launches
and some sleepers are due.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import tempfile
import time
from collections.abc import Callable

import attrs

from runtara import clock, errors, records
from runtara.admin import retention
from runtara.admin.local import LocalAdmin
from runtara.bench import cpu, dataset, report, run, servers
from runtara.bench.clients import ClientGroup
from runtara.bench.progress import Progress
from runtara.config import StorageConfig
from runtara.http.console import Console
from runtara.http.messages import Request
from runtara.launcher.launcher import LAPSED_BATCH
from runtara.launcher.spec import DEFAULT_MAX_FAILURES, LaunchSpec
from runtara.storage import base, launches, selection

AHEAD = dt.timedelta(days=1)
TICKS = 50
"""Launcher ticks timed on each store."""
CLAIMS_PER_TICK = 16
"""Launches one tick claims at most (the launcher's default ``--max-running``)."""
WAKES_PER_TICK = 10
"""Sleepers one tick wakes at most (the default ``--wake-batch``)."""
LEASE = dt.timedelta(seconds=15)
WAKE_GRACE = dt.timedelta(seconds=5)
STALE_AFTER = dt.timedelta(seconds=90)
PAGE = 50
PAGES_FOLLOWED = 20
"""``instances`` pages read one after the other through their cursors."""
REPEATS = 20
"""Times each other read is timed."""
SHOWN = 50
"""Instances ``show`` is timed on."""
COUNTED = 1000
"""Pages count the matching instances up to this many (then say ``1,000+``)."""
PRUNE_BATCH = 500
WAKE_SPEC = LaunchSpec(("/bin/sh", "-c", "true")).to_json()


@attrs.frozen
class Timing:
    """Milliseconds taken by repeats of one piece of work."""

    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, seconds: list[float]) -> Timing:
        ordered = sorted(seconds)
        return cls(
            len(ordered),
            report.percentile(ordered, 0.5) * 1000,
            report.percentile(ordered, 0.99) * 1000,
            (ordered[-1] if ordered else 0.0) * 1000,
        )


def bench(options: run.Options, size: dataset.Size, progress: Progress) -> dict:
    """Both stores measured and the finished instances pruned; the figures and ratios."""
    with tempfile.TemporaryDirectory(prefix="runtara-bench-") as folder:
        url = options.database_url or f"sqlite:{os.path.join(folder, 'bench.db')}"
        options = attrs.evolve(options, database_url=url)
        storage = selection.open_driver(
            StorageConfig(driver=options.driver, database_url=url), workers=4
        )
        try:
            storage.migrate()
            present = storage.run(lambda tx: tx.count_instances_up_to(1), write=False)
            if present:
                raise errors.OperationRefused(
                    f"the data scenario needs an empty store: {storage.describe()} "
                    "holds instances already"
                )
            return _bench(storage, options, size, folder, progress)
        finally:
            storage.close()


def _bench(
    storage: base.StorageDriver,
    options: run.Options,
    size: dataset.Size,
    folder: str,
    progress: Progress,
) -> dict:
    at = clock.utc_now() + AHEAD
    empty = _measure_store("empty", storage, options, folder, at, progress)
    progress.say(
        f"loading {size.finished:,} finished, {size.sleeping:,} sleeping and "
        f"{size.pending:,} pending instances"
    )
    loaded_set = dataset.load(storage, size, at, say=progress.say)
    progress.say(
        f"loaded {sum(loaded_set.rows.values()):,} rows in {loaded_set.seconds:.1f} s "
        f"({loaded_set.rows_per_second:,.0f} rows/s)"
    )
    loaded = _measure_store("loaded", storage, options, folder, at, progress)
    during, pruned = _measure_prune(storage, options, folder, at, progress)
    checkpoint = {"empty": empty.pop("checkpoint"), "loaded": loaded.pop("checkpoint")}
    checkpoint["prune"] = during
    return {
        "size": attrs.asdict(size),
        "load": {
            "seconds": loaded_set.seconds,
            "rows": loaded_set.rows,
            "rows_per_second": loaded_set.rows_per_second,
        },
        "checkpoint": checkpoint,
        "ratios": _ratios(checkpoint),
        "ticks": {"empty": empty["ticks"], "loaded": loaded["ticks"]},
        "reads": {"empty": empty["reads"], "loaded": loaded["reads"]},
        "prune": pruned,
    }


def _ratios(checkpoint: dict[str, report.Figures]) -> dict[str, float | None]:
    empty, loaded, prune = checkpoint["empty"], checkpoint["loaded"], checkpoint["prune"]

    def ratio(top: float, bottom: float) -> float | None:
        return top / bottom if bottom else None

    return {
        "throughput_loaded_to_empty": ratio(loaded.ops_per_second, empty.ops_per_second),
        "p99_loaded_to_empty": ratio(loaded.p99_ms, empty.p99_ms),
        "p99_prune_to_loaded": ratio(prune.p99_ms, loaded.p99_ms),
        "throughput_prune_to_loaded": ratio(prune.ops_per_second, loaded.ops_per_second),
    }


def _measure_store(
    label: str,
    storage: base.StorageDriver,
    options: run.Options,
    folder: str,
    at: dt.datetime,
    progress: Progress,
) -> dict:
    name = f"checkpoint/{label}"
    runs = []
    for number in range(options.runs):
        progress.say(f"{name}: starting runtara-core (run {number + 1} of {options.runs})")
        runs.append(
            run.measure_remote(
                run.Measurement(name, "checkpoint", None),
                lambda: servers.runtara(run.server_arguments(options, folder)),
                options,
                progress,
            )
        )
    figures = report.median(runs)
    progress.say(f"{label}: timing {TICKS} launcher ticks")
    ticks = _ticks(storage, at)
    progress.say(f"{label}: timing the listings, the console's list page and show")
    reads = _reads(storage, at)
    return {"checkpoint": figures, "ticks": ticks, "reads": reads}


def _timed(work: Callable[[], object]) -> float:
    began = time.perf_counter()
    work()
    return time.perf_counter() - began


def _ticks(storage: base.StorageDriver, now: dt.datetime) -> dict[str, Timing]:
    """The store work of :data:`TICKS` launcher ticks at ``now``, each part timed."""
    due_before = now - WAKE_GRACE
    parts: dict[str, list[float]] = {"lapsed": [], "wake": [], "claim": [], "stale": []}
    totals = []
    for _ in range(TICKS):
        spent = {
            "lapsed": _timed(
                lambda: storage.run(
                    lambda tx: launches.lapsed(tx, now, due_before, LAPSED_BATCH), write=False
                )
            ),
            "wake": _timed(
                lambda: storage.run(
                    lambda tx: launches.wake_sleepers(
                        tx, WAKE_SPEC, DEFAULT_MAX_FAILURES, now, due_before, WAKES_PER_TICK
                    )
                )
            ),
            "claim": _timed(
                lambda: storage.run(
                    lambda tx: launches.claim(tx, "bench-launcher", now, LEASE, CLAIMS_PER_TICK)
                )
            ),
            "stale": _timed(
                lambda: storage.run(
                    lambda tx: tx.list_stale_instances(now - STALE_AFTER, 100), write=False
                )
            ),
        }
        for part, seconds in spent.items():
            parts[part].append(seconds)
        totals.append(sum(spent.values()))
    return {
        **{part: Timing.of(seconds) for part, seconds in parts.items()},
        "tick": Timing.of(totals),
    }


def _reads(storage: base.StorageDriver, now: dt.datetime) -> dict[str, Timing]:
    """The operators' reads, each timed :data:`REPEATS` times (``show``: on
    :data:`SHOWN` instances of the first pages)."""
    admin = LocalAdmin(storage, lambda: now)
    console = Console(admin, runs_dir=None, now=lambda: now)

    def listing(**filters) -> Callable[[], records.Page]:
        return lambda: admin.list_instances(limit=PAGE, count_at_most=COUNTED, **filters)

    timings: dict[str, list[float]] = {}
    for name, work in (
        ("instances first page", listing()),
        ("instances of a tenant", listing(tenant_id=dataset.tenant_name(3))),
        ("instances failed", listing(status=records.InstanceStatus.FAILED)),
        ("instances pending", listing(status=records.InstanceStatus.PENDING)),
        ("console list page", lambda: _console(console, {})),
        ("console list of failed", lambda: _console(console, {"status": "failed"})),
    ):
        timings[name] = [_timed(work) for _ in range(REPEATS)]
    following, seen = [], []
    cursor = None
    for _ in range(PAGES_FOLLOWED):
        began = time.perf_counter()
        page = admin.list_instances(limit=PAGE, after=cursor, count_at_most=COUNTED)
        following.append(time.perf_counter() - began)
        seen += [instance.instance_id for instance in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    timings["instances next pages"] = following
    if cursor is not None:
        timings["console page by cursor"] = [
            _timed(lambda: _console(console, {"after": cursor})) for _ in range(REPEATS)
        ]
    chosen = random.Random(2).sample(seen, min(SHOWN, len(seen)))
    timings["show"] = [_timed(lambda i=i: admin.instance_details(i, 10)) for i in chosen]
    return {name: Timing.of(seconds) for name, seconds in timings.items() if seconds}


def _console(console: Console, query: dict[str, str]) -> None:
    response = console.instances(Request("GET", "/instances", query=query))
    if response.status != 200:
        raise errors.OperationRefused(f"the console's list page answered {response.status}")


def _measure_prune(
    storage: base.StorageDriver,
    options: run.Options,
    folder: str,
    at: dt.datetime,
    progress: Progress,
) -> tuple[report.Figures, dict]:
    """Prune every finished instance while the checkpoint load runs; the load's
    figures meanwhile, and the pruning's."""
    name = "checkpoint/prune"
    state_size = 1024
    outcome: dict = {}

    def prune() -> None:
        began = time.perf_counter()
        result = retention.prune(storage, at, batch_size=PRUNE_BATCH)
        seconds = time.perf_counter() - began
        outcome.update(
            instances=len(result.deleted),
            batches=result.batches,
            seconds=seconds,
            instances_per_second=len(result.deleted) / seconds if seconds else 0.0,
        )

    async def measure():
        group = await ClientGroup.spawn(options.client_processes)
        try:
            server = await asyncio.to_thread(servers.runtara, run.server_arguments(options, folder))
            try:
                await group.start(
                    server.address,
                    "checkpoint",
                    connections=options.connections,
                    state_size=state_size,
                    count=None,
                )
                await run.phase(
                    f"{name}: warm-up ", group, server.pid, progress, seconds=options.warmup
                )
                start = cpu.sample(server.pid, group.pids)
                await group.record()
                pruning = asyncio.ensure_future(asyncio.to_thread(prune))
                await run.phase(f"{name}: measured", group, server.pid, progress, until=pruning)
                await pruning
                end = cpu.sample(server.pid, group.pids)
                return await group.finish(), cpu.Use.between(start, end)
            finally:
                await asyncio.to_thread(server.stop)
        except BaseException:
            await group.abort()
            raise

    progress.say(f"{name}: starting runtara-core, pruning under the checkpoint load")
    result, use = asyncio.run(measure())
    progress.say(
        f"pruned {outcome['instances']:,} instances in {outcome['seconds']:.1f} s "
        f"({outcome['instances_per_second']:,.0f}/s)"
    )
    figures = report.figures(name, result, use, scenario="checkpoint", state_size=state_size)
    return figures, outcome


def render(outcome: dict, title: str) -> str:
    """The figures as text tables."""
    size, load = outcome["size"], outcome["load"]
    lines = [
        title,
        f"data set: {size['finished']:,} finished, {size['sleeping']:,} sleeping, "
        f"{size['pending']:,} pending instances; {sum(load['rows'].values()):,} rows loaded "
        f"in {load['seconds']:.1f} s ({load['rows_per_second']:,.0f} rows/s)",
        "",
        report.render(
            outcome["checkpoint"], {}, "checkpoints (store: empty, loaded, loaded while pruning)"
        ),
    ]
    ratios = outcome["ratios"]
    lines.append(
        "loaded/empty: throughput "
        + _ratio(ratios["throughput_loaded_to_empty"])
        + ", p99 "
        + _ratio(ratios["p99_loaded_to_empty"])
        + "; while pruning/loaded: throughput "
        + _ratio(ratios["throughput_prune_to_loaded"])
        + ", p99 "
        + _ratio(ratios["p99_prune_to_loaded"])
    )
    lines.append("")
    lines.append("store work, ms (p50 / p99 / max), empty store -> loaded store")
    width = max(len(name) for group in ("ticks", "reads") for name in outcome[group]["loaded"])
    for group in ("ticks", "reads"):
        empty, loaded = outcome[group]["empty"], outcome[group]["loaded"]
        for name, timing in loaded.items():
            before = empty.get(name)
            lines.append(
                f"  {name.ljust(width)}  {_timing(before) if before else '-':>24}  ->  "
                f"{_timing(timing):>24}"
            )
    pruned = outcome["prune"]
    lines.append("")
    lines.append(
        f"prune: {pruned['instances']:,} instances in {pruned['seconds']:.1f} s "
        f"({pruned['instances_per_second']:,.0f} instances/s, {pruned['batches']} batches)"
    )
    return "\n".join(lines)


def _timing(timing: Timing | dict) -> str:
    if isinstance(timing, dict):
        timing = Timing(**timing)
    return f"{timing.p50_ms:.2f} / {timing.p99_ms:.2f} / {timing.max_ms:.2f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
