"""A workflow of two durable steps, ``first`` and ``second``, that waits between
them until the file FLAG exists (at most 60 s)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from runtara import sdk

FLAG = Path(os.environ["FLAG"])


@sdk.durable(max_retries=0)
def first(number: int) -> int:
    return number + 1


@sdk.durable(max_retries=0)
def second(number: int) -> int:
    return number * 10


def workflow(instance: sdk.Instance) -> int:
    value = first(1)
    deadline = time.monotonic() + 60
    while not FLAG.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return second(value)


if __name__ == "__main__":
    sdk.main(workflow)
