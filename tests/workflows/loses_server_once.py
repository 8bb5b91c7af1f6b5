"""A workflow whose first attempt ends as the Python SDK ends a process that lost
its server (exit code 75, nothing reported), and whose next one completes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from runtara import sdk

MARKER = Path(os.environ["MARKER"])


def workflow(instance: sdk.Instance) -> str:
    instance.checkpoint("before", b"")
    if not MARKER.exists():
        MARKER.touch()
        sys.exit(75)
    return "done"


if __name__ == "__main__":
    sdk.main(workflow)
