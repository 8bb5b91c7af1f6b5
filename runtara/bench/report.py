"""Figures of one measurement, their medians over runs, ratios and the printed table."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import attrs

from runtara.bench import cpu
from runtara.bench.tally import LoadResult


@attrs.frozen
class Figures:
    name: str
    """The scenario's name, or the baseline's (``echo``), followed by ``/scenario``
    for a baseline run with another scenario than ``checkpoint`` (``echo/large``)."""
    ops_per_second: float
    """Successful operations per second (failures are never throughput)."""
    operations: int
    """Successful operations (for ``idle``: the connections held)."""
    errors: int
    """Failed operations."""
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    server_cpu_us_per_op: float | None = None
    """CPU of the server's processes (``storage``: of the bench's own process) per
    operation; None for a server that is not ours to measure."""
    server_peak_rss_mib: float | None = None
    rows_per_commit: float | None = None
    round_trips_per_op: float | None = None
    """Statements the driver sent to the database per storage operation
    (PostgreSQL; None for SQLite, which sends none)."""
    rss_per_connection_kib: float | None = None
    first_error: str | None = None
    scenario: str | None = None
    baseline: str | None = None
    """The baseline this is (None: the server under test)."""
    state_size: int | None = None
    client_processes: int | None = None
    client_cpu_us_per_op: float | None = None
    """CPU of all the client processes per operation."""
    client_core_pct: float | None = None
    """Percent of one core each client process used, on average."""
    machine_idle_pct: float | None = None
    """Percent of the machine's CPU (all cores) that was idle."""
    other_cpu_cores: float | None = None
    """Cores used by other processes than the server and the clients."""
    bound: str | None = None
    """What bounded the figure besides the server: ``client``, ``machine`` or
    ``client+machine`` (see :func:`cpu.saturation`); None: nothing seen."""
    saturation: str | None = None
    """The same in words."""


def result_name(scenario: str, baseline: str | None) -> str:
    """The name of a scenario's measurement on ``baseline`` (None: the server)."""
    if baseline is None:
        return scenario
    return baseline if scenario == "checkpoint" else f"{baseline}/{scenario}"


def percentile(ordered: Sequence[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def figures(name: str, result: LoadResult, use: cpu.Use | None = None, **extra) -> Figures:
    """The figures of a measured window, with its CPU ``use`` when known."""
    ordered = sorted(result.latencies)
    if use is not None and result.operations:
        per_op = 1e6 / result.operations
        bounds = cpu.saturation(use)
        extra.update(
            machine_idle_pct=use.idle_share * 100,
            other_cpu_cores=use.other_cores,
            bound="+".join(bounds) or None,
            saturation="; ".join(bounds.values()) or None,
        )
        if use.server is not None:
            extra["server_cpu_us_per_op"] = use.server * per_op
        if use.clients:
            extra.update(
                client_processes=len(use.clients),
                client_cpu_us_per_op=use.client * per_op,
                client_core_pct=use.client_core_share * 100,
            )
    return Figures(
        name=name,
        ops_per_second=result.operations / result.seconds if result.seconds else 0.0,
        operations=result.operations,
        errors=result.errors,
        p50_ms=percentile(ordered, 0.50) * 1000,
        p90_ms=percentile(ordered, 0.90) * 1000,
        p99_ms=percentile(ordered, 0.99) * 1000,
        max_ms=(ordered[-1] if ordered else 0.0) * 1000,
        first_error=result.first_error,
        **extra,
    )


_MEDIANS = (
    "ops_per_second",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "max_ms",
    "server_cpu_us_per_op",
    "server_peak_rss_mib",
    "rows_per_commit",
    "round_trips_per_op",
    "rss_per_connection_kib",
    "client_cpu_us_per_op",
    "client_core_pct",
    "machine_idle_pct",
    "other_cpu_cores",
)


def median(runs: Sequence[Figures]) -> Figures:
    """Each figure's median over runs (errors are summed; a saturation seen in
    any run is kept, saying in how many)."""

    def middle(field: str) -> float | None:
        values = [getattr(run, field) for run in runs if getattr(run, field) is not None]
        return statistics.median(values) if values else None

    first = runs[0]
    operations = [run.operations for run in runs]
    notes = [run.saturation for run in runs if run.saturation]
    saturation = None
    if notes:
        saturation = (
            notes[0] if len(runs) == 1 else f"{notes[0]} (in {len(notes)} of {len(runs)} runs)"
        )
    kinds = {kind for run in runs if run.bound for kind in run.bound.split("+")}
    return Figures(
        name=first.name,
        # idle "operations" are the connections held, the same in every run
        operations=operations[0] if first.name == "idle" else sum(operations),
        errors=sum(run.errors for run in runs),
        first_error=next((run.first_error for run in runs if run.first_error), None),
        scenario=first.scenario,
        baseline=first.baseline,
        state_size=first.state_size,
        client_processes=first.client_processes,
        bound="+".join(kind for kind in ("client", "machine") if kind in kinds) or None,
        saturation=saturation,
        **{field: middle(field) for field in _MEDIANS},
    )


def ratios(results: dict[str, Figures], baselines: Sequence[str]) -> dict[str, dict[str, float]]:
    """Each scenario's throughput divided by that of each baseline run with it."""
    table = {}
    for name, result in results.items():
        if result.baseline is not None or name == "idle":
            continue
        table[name] = {}
        for baseline in baselines:
            base = results.get(result_name(result.scenario, baseline))
            if base is not None and base.ops_per_second:
                table[name][baseline] = result.ops_per_second / base.ops_per_second
    return table


def _cell(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def render(
    results: dict[str, Figures], ratio_table: dict[str, dict[str, float]], title: str
) -> str:
    baselines = sorted({b for row in ratio_table.values() for b in row})
    headers = [
        "",
        "ops/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "errors",
        "server µs/op",
        "client µs/op",
        "client %core",
        "idle %",
        "other cores",
        "bound",
        "peak RSS MiB",
        "rows/commit",
        "trips/op",
        *(f"×{b}" for b in baselines),
    ]
    rows = []
    for name, f in results.items():
        if name == "idle":
            continue
        rows.append(
            [
                name,
                f"{f.ops_per_second:,.0f}",
                f"{f.p50_ms:.2f}",
                f"{f.p90_ms:.2f}",
                f"{f.p99_ms:.2f}",
                f"{f.max_ms:.1f}",
                str(f.errors),
                _cell(f.server_cpu_us_per_op, "{:,.0f}"),
                _cell(f.client_cpu_us_per_op, "{:,.0f}"),
                _cell(f.client_core_pct, "{:.0f}"),
                _cell(f.machine_idle_pct, "{:.0f}"),
                _cell(f.other_cpu_cores, "{:.1f}"),
                f.bound or "-",
                _cell(f.server_peak_rss_mib, "{:.0f}"),
                _cell(f.rows_per_commit, "{:.1f}"),
                _cell(f.round_trips_per_op, "{:.2f}"),
                *(_cell(ratio_table.get(name, {}).get(b), "{:.2f}") for b in baselines),
            ]
        )
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    lines = [title]
    for row in [headers, *rows]:
        lines.append(
            "  ".join(str(cell).rjust(width) for cell, width in zip(row, widths, strict=True))
        )
    if "idle" in results:
        idle = results["idle"]
        lines.append(
            f"idle connections: {idle.operations}, server RSS per connection "
            f"{idle.rss_per_connection_kib:.1f} KiB (peak RSS {idle.server_peak_rss_mib:.0f} MiB)"
        )
    for name, f in results.items():
        if f.saturation:
            lines.append(f"{name}: {f.saturation}")
    for name, f in results.items():
        if f.errors:
            lines.append(
                f"{name}: {f.errors} failed operations (not counted), first: {f.first_error}"
            )
    return "\n".join(lines)
