"""A workflow that never looks at its signals: a cancel reaches it only as a signal
to its process."""

from __future__ import annotations

import time

from runtara import sdk


def workflow(instance: sdk.Instance) -> None:
    instance.checkpoint("started", b"")
    while True:
        instance.heartbeat()
        time.sleep(0.2)


if __name__ == "__main__":
    sdk.main(workflow)
