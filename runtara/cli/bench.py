"""``runtara-core bench``: throughput and latency, as ratios to baselines of the same run."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import attrs

from runtara import config, limits
from runtara.cli import common

SERVE_PORT = 8001
MAX_STATE_SIZE = limits.MAX_FRAME_SIZE - limits.KiB
"""Room in a frame for the rest of the request."""


def _whole(low: int, high: int, what: str):
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise ValueError(f"{raw!r} is not {what}")
        return value

    return parse


def bench(argv: Sequence[str]) -> int:
    # the benchmark's modules load only for it
    from runtara.bench import dataset, run, scenarios, serve

    parser = common.Parser(
        prog=f"{common.PROG} bench",
        description="K concurrent instances on their own QUIC connections, spread over M "
        "client processes, run a scenario after a warm-up; the same load runs against "
        "baselines in the same run (echo: our transport without storage; naive: a plain "
        "aioquic server; storage: the scenario's requests through the handlers and driver "
        "from K threads without network), and each scenario's throughput is reported as a "
        "ratio to each baseline, with the CPU the server and the client used per operation.",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=[*scenarios.SCENARIOS, "idle", "data"],
        help="checkpoint (new ids; the default), resume (existing ids), lifecycle (register, "
        "checkpoints, poll, heartbeat, complete), large (64 KiB states unless --state-size), "
        "idle (server memory per idle connection); repeatable. data (on its own): the "
        "server's costs on an empty store and on one loaded with --instances finished "
        "instances (checkpoints, launcher ticks, listings, show, prune)",
    )
    parser.add_argument(
        "--instances",
        type=common.positive,
        metavar="N",
        help=f"with --scenario data: finished instances loaded, with N/10 sleeping and "
        f"N/100 pending ({dataset.FINISHED:,})",
    )
    parser.add_argument("--connections", type=common.positive, default=32, help="K (32)")
    parser.add_argument(
        "--client-processes",
        type=common.positive,
        default=1,
        metavar="M",
        help="client processes the K connections are spread over, each an asyncio loop (1)",
    )
    parser.add_argument(
        "--state-size",
        type=common.checked(
            _whole(0, MAX_STATE_SIZE, f"a state size (0 to {MAX_STATE_SIZE} bytes)")
        ),
        help="checkpoint state bytes of every scenario (1024; large: 65536)",
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
    parser.add_argument(
        "--processes",
        type=common.positive,
        default=1,
        metavar="N",
        help="server processes of the runtara-core server started (its --processes); "
        "1 by default, as the echo baseline, so that they compare at equal counts",
    )
    parser.add_argument(
        "--serve",
        choices=serve.KINDS,
        help="run no load: serve the echo baseline, or runtara-core on a fresh database, on "
        "--host/--port until Ctrl-C, printing each second the requests served and the "
        "server's CPU per request (for a load client of your own)",
    )
    parser.add_argument("--host", help="with --serve: the address to listen on (127.0.0.1)")
    parser.add_argument(
        "--port",
        type=common.checked(_whole(0, 65535, "a port (0 to 65535)")),
        help=f"with --serve: the UDP port ({SERVE_PORT}; 0 picks a free one)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    config.add_arguments(parser, config.BENCH_SETTINGS, config.ServerConfig)
    arguments = parser.parse_args(argv)
    if arguments.serve is None and (arguments.host is not None or arguments.port is not None):
        parser.error("--host and --port go with --serve")
    if arguments.client_processes > arguments.connections:
        parser.error(
            f"--client-processes {arguments.client_processes}: at most --connections "
            f"({arguments.connections}), each process needs a connection"
        )
    scenario_names = tuple(dict.fromkeys(arguments.scenario or ["checkpoint"]))
    if "data" in scenario_names and (len(scenario_names) > 1 or arguments.server is not None):
        parser.error("--scenario data runs on its own, on the server it starts (not with --server)")
    if "data" not in scenario_names and arguments.instances is not None:
        parser.error("--instances goes with --scenario data")
    if arguments.server is not None and "idle" in scenario_names:
        parser.error("--scenario idle measures the server the bench starts: not with --server")
    baselines = () if arguments.baselines == "none" else tuple(arguments.baselines.split(","))
    unknown = set(baselines) - set(run.BASELINES)
    if unknown:
        parser.error(f"--baselines: unknown {', '.join(sorted(unknown))}")
    server = config.ServerConfig(**config.resolve(config.BENCH_SETTINGS, arguments, os.environ))
    options = run.Options(
        scenarios=scenario_names,
        baselines=baselines,
        connections=arguments.connections,
        state_size=arguments.state_size,
        warmup=arguments.warmup,
        duration=None if arguments.count else arguments.duration,
        count=arguments.count,
        runs=arguments.runs,
        driver=server.driver,
        database_url=server.database_url,
        server=arguments.server,
        max_concurrent=server.max_concurrent,
        server_processes=arguments.processes,
        client_processes=arguments.client_processes,
        idle_connections=arguments.idle_connections,
        progress=sys.stderr.isatty(),
    )
    if arguments.serve is not None:
        host = arguments.host or "127.0.0.1"
        port = SERVE_PORT if arguments.port is None else arguments.port
        serve.serve(arguments.serve, host, port, options, sys.stdout)
        return 0
    if scenario_names == ("data",):
        return _data(arguments, options, server)
    return _measured(
        arguments, options, lambda: run.bench(options), _scenarios_text(options, server)
    )


def _measured(arguments: argparse.Namespace, options, measure, as_text) -> int:
    """Print what ``measure`` returns: JSON with --json, else ``as_text(outcome)``."""
    from runtara.cli import render

    try:
        outcome = measure()
    except KeyboardInterrupt:
        print(f"{common.PROG} bench: interrupted", file=sys.stderr)
        return 130
    if arguments.json:
        print(render.to_json({"options": attrs.asdict(options), **outcome}))
    else:
        print(as_text(outcome))
    return 0


def _driver(server: config.ServerConfig) -> str:
    from runtara.storage import registry, selection

    return selection.driver_name(server.storage, registry.DriverRegistry())


def _scenarios_text(options, server: config.ServerConfig):
    from runtara.bench import report, scenarios

    scenario_names = options.scenarios
    sizes = (
        f"{options.state_size}-byte states"
        if options.state_size is not None
        else ", ".join(
            f"{name} {scenarios.state_size(name, None)}-byte states"
            for name in scenario_names
            if name != "idle"
        )
    )
    processes = options.client_processes
    title = (
        f"runtara-core bench: {_driver(server)}, {options.connections} connections in "
        f"{processes} client process{'es' if processes > 1 else ''}, {sizes}, "
        + (f"{options.count} operations" if options.count else f"{options.duration:g} s")
        + f" after {options.warmup:g} s warm-up, median of {options.runs} run(s)"
    )
    return lambda outcome: report.render(outcome["median"], outcome["ratios"], title)


def _data(arguments: argparse.Namespace, options, server: config.ServerConfig) -> int:
    from runtara.bench import data, dataset
    from runtara.bench.progress import Progress

    size = dataset.Size.scaled(arguments.instances or dataset.FINISHED)
    title = (
        f"runtara-core bench --scenario data: {_driver(server)}, {options.connections} "
        "connections, "
        + (f"{options.count} checkpoints" if options.count else f"{options.duration:g} s")
        + f" after {options.warmup:g} s warm-up per measurement, median of {options.runs} "
        "run(s) per store"
    )
    return _measured(
        arguments,
        options,
        lambda: data.bench(options, size, Progress(options.progress)),
        lambda outcome: data.render(outcome, title),
    )
