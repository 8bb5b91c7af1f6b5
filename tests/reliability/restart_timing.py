"""How long a server restart holds up the workflows it serves.

Runs ``python -m runtara`` as a child process on a fixed UDP port, and N
workflow processes on the Python SDK (``tests/workflows/steps.py``: durable
steps of 20 ms, each appending a line to its own file). Once every workflow
has made progress, the server is stopped (SIGTERM, a graceful stop, or
SIGKILL), kept down for ``--down`` seconds, and started again on the same
port, database and runs folder. The figure is the time from the restarted
server's start-up line ("serving the runtara instance protocol") to the
moment every workflow has made two new steps, by the files. Runs repeat
``--runs`` times per kind of stop and print each time and the median.

No workflow is launched by the server (``--no-launcher``): they are started
by the harness, as an outside environment would, and they keep running while
the server is down, waiting for it (RUNTARA_SERVER_WAIT). Run it by hand from
the repository's root folder:

    python -m tests.reliability.restart_timing --workflows 6 --runs 3
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support import free_udp_port, script_environment

WORKFLOW = Path(__file__).resolve().parent.parent / "workflows" / "steps.py"


def _serve(folder: Path, port: int) -> tuple[subprocess.Popen, float]:
    server = subprocess.Popen(
        [sys.executable, "-m", "runtara", "--port", str(port), "--processes", "1", "--no-launcher"],
        cwd=folder,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in server.stderr:
        if "serving the runtara instance protocol" in line:
            return server, time.monotonic()
    raise SystemExit(f"the server did not start (exit code {server.wait()})")


def one_restart(how: signal.Signals, workflows: int, down: float) -> float:
    """Seconds from the restarted server's readiness to every workflow's progress."""
    folder = Path(tempfile.mkdtemp(prefix="runtara-restart-"))
    port = free_udp_port()
    server, _ = _serve(folder, port)
    effects = [folder / f"effects-{n}" for n in range(workflows)]
    processes = [
        subprocess.Popen(
            [sys.executable, str(WORKFLOW)],
            env=script_environment(
                ("127.0.0.1", port),
                f"wf-{n}",
                "timing",
                EFFECTS=str(effects[n]),
                STEPS="1000000",
                STEP_SECONDS="0.02",
            ),
            stderr=subprocess.DEVNULL,
        )
        for n in range(workflows)
    ]

    def steps() -> list[int]:
        return [len(path.read_text().splitlines()) if path.exists() else 0 for path in effects]

    try:
        while min(steps()) < 5:
            time.sleep(0.05)
        server.send_signal(how)
        server.wait()
        time.sleep(down)
        before = steps()
        server, ready = _serve(folder, port)
        progressed: dict[int, float] = {}
        while len(progressed) < workflows and time.monotonic() - ready < 60:
            now = steps()
            for n in range(workflows):
                if n not in progressed and now[n] >= before[n] + 2:
                    progressed[n] = time.monotonic() - ready
            time.sleep(0.01)
        return max(progressed.values()) if len(progressed) == workflows else float("inf")
    finally:
        for process in processes:
            process.kill()
            process.wait()
        server.send_signal(signal.SIGKILL)
        server.wait()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.restart_timing")
    parser.add_argument("--workflows", type=int, default=6)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--down", type=float, default=1.0, help="seconds the server stays down")
    arguments = parser.parse_args()
    for how in (signal.SIGTERM, signal.SIGKILL):
        times = [
            one_restart(how, arguments.workflows, arguments.down) for _ in range(arguments.runs)
        ]
        shown = ", ".join(f"{seconds:.2f}" for seconds in times)
        print(
            f"{how.name}: seconds from the restarted server's readiness to all "
            f"{arguments.workflows} workflows progressing: {shown} "
            f"(median {statistics.median(times):.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
