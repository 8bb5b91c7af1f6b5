"""``bench --serve``: a server for an outside load client, with its CPU per request.

The server (the ``echo`` baseline, or runtara-core on a fresh database) runs
in a child process on the given port until Ctrl-C. Each second in which it
served requests, a line says how many and the server's CPU per request,
counted from its ``GetStats`` counters and ``/proc``; at the end, the same
over all those seconds. So a client in another language (such as a Rust
client, which costs the machine much less CPU per request than ours) loads
the server, and the server is measured alone.
"""

from __future__ import annotations

import asyncio
import signal
import tempfile
from typing import TextIO

import attrs

from runtara import errors
from runtara.bench import cpu, run, servers

KINDS = ("echo", "runtara")


@attrs.define
class _Totals:
    requests: int = 0
    seconds: float = 0.0
    server_cpu: float = 0.0
    machine_busy: float = 0.0
    machine_idle: float = 0.0


def serve(kind: str, host: str, port: int, options: run.Options, out: TextIO) -> None:
    """Serve ``kind`` on ``host:port`` until SIGINT or SIGTERM, writing to ``out``."""
    with tempfile.TemporaryDirectory(prefix="runtara-bench-") as folder:
        if kind == "echo":
            server = servers.echo(options.max_concurrent, host=host, port=port, management=True)
        else:
            server = servers.runtara(run.server_arguments(options, folder), host=host, port=port)
        try:
            totals = asyncio.run(_watch(kind, server, out))
        finally:
            server.stop()
    if totals.requests:
        out.write(
            f"{kind}: {totals.requests:,} requests in {totals.seconds:.0f} s with requests, "
            f"{totals.requests / totals.seconds:,.0f}/s; server CPU "
            f"{totals.server_cpu / totals.requests * 1e6:,.0f} µs per request "
            f"({totals.server_cpu / totals.seconds * 100:.0f} % of a core); machine idle "
            f"{totals.machine_idle / (totals.machine_busy + totals.machine_idle) * 100:.0f} %\n"
        )
    else:
        out.write(f"{kind}: no requests served\n")
    out.flush()


async def _watch(kind: str, server: servers.ServerProcess, out: TextIO) -> _Totals:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stop.set)
    totals = _Totals()
    served = (await _counters(kind, server)).get("completed", 0)
    last = cpu.sample(server.pid, [])
    # only now: a request sent on reading this line comes after the first count
    out.write(
        f"{kind} listening on {server.address[0]}:{server.address[1]} "
        "(Ctrl-C stops it); a line each second with requests\n"
    )
    out.flush()
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except asyncio.TimeoutError:
            pass
        final = stop.is_set()
        try:
            counters = await _counters(kind, server)
        except (errors.ClientError, errors.OperationRefused):
            if final:  # Ctrl-C reached the server too: it is stopping
                break
            raise
        now = cpu.sample(server.pid, [])
        # every count includes the previous GetStats: the request that asked
        requests = max(0, int(counters.get("completed", 0) - served) - 1)
        served = counters.get("completed", 0)
        use = cpu.Use.between(last, now)
        last = now
        if not requests:
            continue
        totals.requests += requests
        totals.seconds += use.seconds
        totals.server_cpu += use.server
        totals.machine_busy += use.machine_busy
        totals.machine_idle += use.machine_idle
        out.write(
            f"  {requests / use.seconds:9,.0f} requests/s  server CPU "
            f"{use.server / requests * 1e6:6,.0f} µs per request "
            f"({use.server / use.seconds * 100:3.0f} % of a core), "
            f"machine idle {use.idle_share * 100:3.0f} %\n"
        )
        out.flush()
    return totals


async def _counters(kind: str, server: servers.ServerProcess) -> dict[str, float]:
    """The server's counters; raises OperationRefused when it ended, ClientError
    when it does not answer."""
    try:
        return await run.counters(server.management, server.token)
    except errors.ClientError:
        if server.process.poll() is None:
            raise
        said = server.log[-1] if server.log else "nothing"
        raise errors.OperationRefused(
            f"the {kind} server ended (exit code {server.process.returncode}); "
            f"its last words: {said}"
        ) from None
