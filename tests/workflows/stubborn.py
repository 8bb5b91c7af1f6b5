"""A workflow that never looks at its signals and ignores SIGTERM: only SIGKILL ends it."""

from __future__ import annotations

import signal
import time

from runtara import sdk


def workflow(instance: sdk.Instance) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    instance.checkpoint("started", b"")
    while True:
        instance.heartbeat()
        time.sleep(0.2)


if __name__ == "__main__":
    sdk.main(workflow)
