"""``runtara-core bench``: throughput and latency, as ratios to baselines of the same run."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import attrs

from runtara import config
from runtara.cli import common


def bench(argv: Sequence[str]) -> int:
    from runtara.bench import load, run  # the benchmark's modules load only for it
    from runtara.cli import render

    parser = common.Parser(
        prog=f"{common.PROG} bench",
        description="K concurrent instances on their own QUIC connections run a scenario after "
        "a warm-up; the same load runs against baselines in the same run (echo: our transport "
        "without storage; naive: a plain aioquic server; storage: the driver's checkpoint "
        "operation from K threads without network), and each scenario's throughput is "
        "reported as a ratio to each baseline.",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=[*load.SCENARIOS, "idle"],
        help="checkpoint (new ids; the default), resume (existing ids), lifecycle (register, "
        "checkpoints, poll, heartbeat, complete), large (64 KiB states unless --state-size), "
        "idle (server memory per idle connection); repeatable",
    )
    parser.add_argument("--connections", type=common.positive, default=32, help="K (32)")
    parser.add_argument(
        "--state-size", type=int, help="checkpoint state bytes (1024; large: 65536)"
    )
    parser.add_argument(
        "--duration", type=common.checked(config.duration), default=10.0, help="measured time (10s)"
    )
    parser.add_argument(
        "--count", type=common.positive, help="measure this many operations instead"
    )
    parser.add_argument(
        "--warmup",
        type=common.checked(config.duration_or_zero),
        default=2.0,
        help="time before measuring (2s)",
    )
    parser.add_argument(
        "--runs", type=common.positive, default=1, help="repeat; report medians (1)"
    )
    parser.add_argument(
        "--baselines",
        default="echo,naive,storage",
        help="comma-separated subset of echo,naive,storage, or 'none'",
    )
    parser.add_argument(
        "--idle-connections", type=common.positive, default=1000, help="for idle (1000)"
    )
    parser.add_argument(
        "--server",
        type=common.checked(config.address),
        metavar="HOST:PORT",
        help="load this running server instead of starting one",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    config.add_arguments(parser, config.BENCH_SETTINGS, config.ServerConfig)
    arguments = parser.parse_args(argv)
    scenarios = tuple(arguments.scenario or ["checkpoint"])
    baselines = () if arguments.baselines == "none" else tuple(arguments.baselines.split(","))
    unknown = set(baselines) - set(run.BASELINES)
    if unknown:
        parser.error(f"--baselines: unknown {', '.join(sorted(unknown))}")
    state_size = arguments.state_size
    if state_size is None:
        state_size = 65536 if scenarios == ("large",) else 1024
    server = config.ServerConfig(**config.resolve(config.BENCH_SETTINGS, arguments, os.environ))
    options = run.Options(
        scenarios=scenarios,
        baselines=baselines,
        connections=arguments.connections,
        state_size=state_size,
        warmup=arguments.warmup,
        duration=None if arguments.count else arguments.duration,
        count=arguments.count,
        runs=arguments.runs,
        driver=server.driver,
        database_url=server.database_url,
        server=arguments.server,
        max_concurrent=server.max_concurrent,
        idle_connections=arguments.idle_connections,
        progress=sys.stderr.isatty() and not arguments.json,
    )
    outcome = run.bench(options)
    if arguments.json:
        print(render.to_json({"options": attrs.asdict(options), **outcome}))
        return 0
    from runtara.bench import report
    from runtara.storage import registry, selection

    driver = selection.driver_name(server.storage, registry.DriverRegistry())
    title = (
        f"runtara-core bench: {driver}, {options.connections} connections, "
        f"{options.state_size}-byte states, "
        + (f"{options.count} operations" if options.count else f"{options.duration:g} s")
        + f" after {options.warmup:g} s warm-up, median of {options.runs} run(s)"
    )
    print(report.render(outcome["median"], outcome["ratios"], title))
    return 0
