"""Figures of one measurement, their medians over runs, ratios and the printed table."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import attrs

from runtara.bench.load import LoadResult


@attrs.frozen
class Figures:
    name: str
    ops_per_second: float
    operations: int
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    server_cpu_us_per_op: float | None = None
    server_peak_rss_mib: float | None = None
    rows_per_commit: float | None = None
    rss_per_connection_kib: float | None = None
    first_error: str | None = None


def percentile(ordered: Sequence[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def figures(name: str, result: LoadResult, **extra) -> Figures:
    ordered = sorted(result.latencies)
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


def median(runs: Sequence[Figures]) -> Figures:
    """Each figure's median over runs (errors are summed)."""

    def middle(field: str) -> float | None:
        values = [getattr(run, field) for run in runs if getattr(run, field) is not None]
        return statistics.median(values) if values else None

    numeric = [
        "ops_per_second",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "max_ms",
        "server_cpu_us_per_op",
        "server_peak_rss_mib",
        "rows_per_commit",
        "rss_per_connection_kib",
    ]
    operations = [run.operations for run in runs]
    return Figures(
        name=runs[0].name,
        # idle "operations" are the connections held, the same in every run
        operations=operations[0] if runs[0].name == "idle" else sum(operations),
        errors=sum(run.errors for run in runs),
        first_error=next((run.first_error for run in runs if run.first_error), None),
        **{field: middle(field) for field in numeric},
    )


def ratios(results: dict[str, Figures], baselines: Sequence[str]) -> dict[str, dict[str, float]]:
    """Each non-baseline's throughput divided by each baseline's."""
    table: dict[str, dict[str, float]] = {}
    for name, result in results.items():
        if name in baselines or name == "idle":
            continue
        table[name] = {
            baseline: result.ops_per_second / results[baseline].ops_per_second
            for baseline in baselines
            if baseline in results and results[baseline].ops_per_second
        }
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
        "peak RSS MiB",
        "rows/commit",
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
                _cell(f.server_peak_rss_mib, "{:.0f}"),
                _cell(f.rows_per_commit, "{:.1f}"),
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
        if f.errors:
            lines.append(f"{name}: {f.errors} errors, first: {f.first_error}")
    return "\n".join(lines)
