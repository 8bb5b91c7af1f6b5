"""A workflow that notes when it runs: a line ``start ID KEY TIME`` as it begins
and ``end ID KEY TIME`` before it completes (in the file TRACK), holding HOLD
seconds between them."""

from __future__ import annotations

import os
import time

from appending import append_line

from runtara import sdk

TRACK = os.environ["TRACK"]
HOLD = float(os.environ.get("HOLD", "0.5"))
KEY = os.environ.get("KEY", "-")


def note(instance: sdk.Instance, what: str) -> None:
    append_line(TRACK, f"{what} {instance.instance_id} {KEY} {time.time():.6f}\n")


def workflow(instance: sdk.Instance) -> str:
    note(instance, "start")
    time.sleep(HOLD)
    note(instance, "end")
    return "done"


if __name__ == "__main__":
    sdk.main(workflow)
