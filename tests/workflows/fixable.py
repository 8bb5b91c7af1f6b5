"""Five durable steps; step n appends "<instance> step <n>" to EFFECTS before its
result is saved. Step 5 fails the workflow unless FIXED=1 is set (the fix a fork
or a retry brings in through its environment)."""

from __future__ import annotations

import os

from runtara import sdk

EFFECTS = os.environ["EFFECTS"]
INSTANCE = os.environ["RUNTARA_INSTANCE_ID"]
FIXED = os.environ.get("FIXED") == "1"


@sdk.durable(max_retries=0)
def step(number: int) -> int:
    with open(EFFECTS, "a") as effects:
        effects.write(f"{INSTANCE} step {number}\n")
    if number == 5 and not FIXED:
        raise RuntimeError("step 5 failed: not fixed")
    return number


def workflow(instance: sdk.Instance) -> int:
    return sum(step(number) for number in range(1, 6))


if __name__ == "__main__":
    sdk.main(workflow)
