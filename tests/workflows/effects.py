"""A workflow of STEPS durable steps whose effects can be audited after a chaotic run.

Step n appends "<instance> <n> <pid>" to EFFECTS (one short line, appended at
once), waits STEP_SECONDS, and returns the pid of the process that ran it, so
its checkpoint names the process whose run of the step counted. After every
NAP_EVERY-th step it sleeps NAP_SECONDS durably, leaving its process
(``sleep(exit=True)``), to be relaunched when it is due. Pause and cancel reach
it at its checkpoints, as the SDK handles them.
"""

from __future__ import annotations

import os
import time

from appending import append_line

from runtara import sdk

STEPS = int(os.environ.get("STEPS", "8"))
STEP_SECONDS = float(os.environ.get("STEP_SECONDS", "0.05"))
NAP_EVERY = int(os.environ.get("NAP_EVERY", "3"))
NAP_SECONDS = float(os.environ.get("NAP_SECONDS", "0.3"))
EFFECTS = os.environ["EFFECTS"]
INSTANCE = os.environ["RUNTARA_INSTANCE_ID"]


@sdk.durable(max_retries=0)
def step(number: int) -> int:
    append_line(EFFECTS, f"{INSTANCE} {number} {os.getpid()}\n")
    time.sleep(STEP_SECONDS)
    return os.getpid()


def workflow(instance: sdk.Instance) -> int:
    for number in range(STEPS):
        step(number)
        if (number + 1) % NAP_EVERY == 0 and number + 1 < STEPS:
            instance.sleep(NAP_SECONDS, key=f"nap-{number}", exit=True)
    return STEPS


if __name__ == "__main__":
    sdk.main(workflow)
