"""A workflow that sleeps NAPS times, leaving its process each time, then kills
itself once (the first time it gets there, as the file CRASHED says), then
completes."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from runtara import sdk

NAPS = int(os.environ.get("NAPS", "4"))
CRASHED = Path(os.environ["CRASHED"])


def workflow(instance: sdk.Instance) -> str:
    for nap in range(NAPS):
        instance.sleep(0.2, key=f"nap-{nap}", exit=True)
    if not CRASHED.exists():
        CRASHED.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return "rested"


if __name__ == "__main__":
    sdk.main(workflow)
