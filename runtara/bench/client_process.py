"""A client process of the benchmark: one asyncio loop running a share of the load.

Run as ``python -m runtara.bench.client_process`` by
:mod:`runtara.bench.clients`, which drives it over its standard streams, one
JSON object a line. The first line it reads is its plan: ``host``, ``port``,
``scenario``, ``instance_ids``, ``state_size``, ``count`` (or null).

The process connects, prepares and starts the load (the warm-up), then
writes ``{"ready": true}``, or ``{"failed": MESSAGE, "refused": BOOL}`` and
exits 1. Then commands on standard input, each answered by one line:

- ``totals``: ``{"totals": [successes, failures]}`` since the start;
- ``record``: opens the measured window, ``{"recording": true}``;
- ``stop``: closes it and ends the load, ``{"result": {...}}`` (a
  :class:`~runtara.bench.tally.LoadResult`), then the process exits.

When ``count`` successes close the window first, it writes ``{"done": true}``
unasked. At the end of standard input it stops at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys

import attrs

from runtara import errors
from runtara.bench.load import ClientLoad


def _write(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _run() -> int:
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    line = await commands.readline()
    if not line:  # the driving process gave up before the plan
        return 1
    plan = json.loads(line)
    load = ClientLoad(
        (plan["host"], plan["port"]),
        plan["scenario"],
        plan["instance_ids"],
        state_size=plan["state_size"],
        count=plan["count"],
    )
    try:
        await load.start()
    except (errors.ClientError, errors.OperationRefused) as error:
        await load.close()
        _write({"failed": str(error), "refused": isinstance(error, errors.OperationRefused)})
        return 1

    async def tell_done() -> None:
        await load.done.wait()
        _write({"done": True})

    announcer = asyncio.ensure_future(tell_done())
    _write({"ready": True})
    try:
        while True:
            command = (await commands.readline()).decode().strip()
            if command == "totals":
                _write({"totals": [load.tally.completed, load.tally.failed]})
            elif command == "record":
                load.record()
                _write({"recording": True})
            elif command == "stop":
                result = await load.finish()
                _write({"result": attrs.asdict(result)})
                return 0
            elif not command:  # end of input: the driving process is gone
                await load.close()
                return 1
            else:
                raise ValueError(f"unknown command {command!r}")
    finally:
        announcer.cancel()


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    # Ctrl-C reaches the whole terminal's process group: the driving process
    # decides for its client processes
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # asyncio's own loop, not uvloop: uvloop as an aioquic client loses
    # concurrent handshakes
    sys.exit(asyncio.run(_run()))


if __name__ == "__main__":
    main()
