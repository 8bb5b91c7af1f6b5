"""The ``storage`` baseline: the driver's checkpoint operation from K threads, no network.

Each thread runs the real Checkpoint operation (one transaction: lock the
instance, insert the checkpoint, move the instance's checkpoint id, read
signals) against the configured driver, as fast as it can.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

from runtara import clock
from runtara.bench.load import LoadResult
from runtara.storage import base


def run_storage(
    storage: base.StorageDriver,
    *,
    threads: int,
    state_size: int,
    warmup: float,
    duration: float | None,
    count: int | None,
) -> LoadResult:
    run = uuid.uuid4().hex[:8]
    state = os.urandom(state_size)
    lock = threading.Lock()
    tally = {"recording": False, "stop": False, "operations": 0, "errors": 0, "latencies": []}

    def work(index: int) -> None:
        instance_id = f"bench-storage-{run}-{index}"
        storage.register_instance(instance_id, "bench", None, clock.utc_now())
        sequence = 0
        while not tally["stop"]:
            sequence += 1
            started = time.perf_counter()
            try:
                storage.checkpoint(instance_id, f"cp-{sequence}", state, clock.utc_now())
                failed = False
            except Exception:
                failed = True
            latency = time.perf_counter() - started
            with lock:
                if tally["recording"]:
                    tally["operations"] += 1
                    tally["errors"] += failed
                    tally["latencies"].append(latency)
                    if count is not None and tally["operations"] >= count:
                        tally["stop"] = True

    workers = [threading.Thread(target=work, args=(index,)) for index in range(threads)]
    for worker in workers:
        worker.start()
    time.sleep(warmup)
    with lock:
        tally["recording"] = True
        started = time.perf_counter()
    while not tally["stop"] and (duration is None or time.perf_counter() - started < duration):
        time.sleep(0.05)
    with lock:
        seconds = time.perf_counter() - started
        tally["recording"] = False
        tally["stop"] = True
    for worker in workers:
        worker.join()
    return LoadResult(tally["operations"], tally["errors"], seconds, tally["latencies"])
