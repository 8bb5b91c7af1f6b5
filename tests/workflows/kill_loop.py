"""A workflow of STEPS durable steps that kills itself with SIGKILL between steps,
KILLS times in all over its run, then completes.

Each step appends "<step> <pid>" to EFFECTS before its result is saved; the
kill count lives in KILLS_FILE. It dies only right after a step it ran itself
(so every attempt it kills made progress), at random, seeded by how far the
run got, so a run is repeatable.
"""

from __future__ import annotations

import os
import random
import signal
import sys
from pathlib import Path

from runtara import sdk

STEPS = int(os.environ.get("STEPS", "30"))
KILLS = int(os.environ.get("KILLS", "20"))
EFFECTS = Path(os.environ["EFFECTS"])
KILLS_FILE = Path(os.environ["KILLS_FILE"])


def _append(path: Path, line: str) -> None:
    with open(path, "a") as file:
        file.write(line + "\n")
        file.flush()
        os.fsync(file.fileno())


ran: list[int] = []
"""The steps this process ran (not returned from their checkpoints)."""


@sdk.durable(max_retries=0)
def step(number: int) -> int:
    _append(EFFECTS, f"{number} {os.getpid()}")
    ran.append(number)
    return number * number


def maybe_die(done: int) -> None:
    kills = int(KILLS_FILE.read_text()) if KILLS_FILE.exists() else 0
    if kills < KILLS and random.Random(done * 1000 + kills).random() < 0.8:
        KILLS_FILE.write_text(str(kills + 1))
        os.kill(os.getpid(), signal.SIGKILL)


def workflow(instance: sdk.Instance) -> int:
    total = 0
    for number in range(STEPS):
        total += step(number)
        if ran and ran[-1] == number:
            maybe_die(number)
    return total


if __name__ == "__main__":
    print("kill_loop attempt", os.getpid(), file=sys.stderr, flush=True)
    sdk.main(workflow)
