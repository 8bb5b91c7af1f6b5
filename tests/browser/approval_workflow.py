"""The console test's instance: three durable steps (each a checkpoint, and a
line on stdout), then it waits for the custom signal for checkpoint
``approve`` and completes with its payload.

A pause is noticed at its next signal poll: the instance acknowledges it and
suspends, and its process exits; a resume has the launcher run it again,
the steps' saved results returned without running them twice.
"""

from __future__ import annotations

import time

from runtara import sdk

POLL = 0.2


@sdk.durable
def step(number: int) -> dict:
    print(f"step {number} done", flush=True)
    return {"step": number, "data": "x" * (300 * number)}


def workflow(instance: sdk.Instance) -> dict:
    for number in (1, 2, 3):
        step(number)
    print("waiting for the custom signal 'approve'", flush=True)
    while True:
        signal = instance.poll_signals("approve", force=True).custom_signal
        if signal is not None:
            return {"decision": signal.payload.decode()}
        time.sleep(POLL)


if __name__ == "__main__":
    sdk.main(workflow)
