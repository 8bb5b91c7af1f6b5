"""A workflow that fails (raises) while the file BROKEN exists, and completes once it
is gone; NAP (seconds) makes it sleep durably first, leaving its process."""

from __future__ import annotations

import os
from pathlib import Path

from runtara import sdk

BROKEN = Path(os.environ["BROKEN"])
NAP = float(os.environ.get("NAP", "0"))


def workflow(instance: sdk.Instance) -> str:
    if NAP:
        instance.sleep(NAP, key="nap", exit=True)
    if BROKEN.exists():
        raise RuntimeError(f"broken: {BROKEN} exists")
    return "fine"


if __name__ == "__main__":
    sdk.main(workflow)
