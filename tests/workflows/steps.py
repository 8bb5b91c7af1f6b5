"""A workflow of STEPS durable steps of STEP_SECONDS each; each step appends
"<step> <pid>" to EFFECTS before its result is saved. Step FAIL_AT (if set)
raises instead, failing the workflow."""

from __future__ import annotations

import os
import time
from pathlib import Path

from runtara import sdk

STEPS = int(os.environ.get("STEPS", "5"))
STEP_SECONDS = float(os.environ.get("STEP_SECONDS", "0.2"))
EFFECTS = Path(os.environ["EFFECTS"])
FAIL_AT = int(os.environ.get("FAIL_AT", "-1"))


@sdk.durable(max_retries=0)
def step(number: int) -> int:
    if number == FAIL_AT:
        raise RuntimeError(f"step {number} failed")
    with open(EFFECTS, "a") as effects:
        effects.write(f"{number} {os.getpid()}\n")
    time.sleep(STEP_SECONDS)
    return number


def workflow(instance: sdk.Instance) -> int:
    return sum(step(number) for number in range(STEPS))


if __name__ == "__main__":
    sdk.main(workflow)
