"""The ``storage`` baseline: the driver's checkpoint operation from K threads, no network.

Each thread runs the real Checkpoint handler (one transaction: lock the
instance, insert the checkpoint, move the instance's checkpoint id, read
signals) against the configured driver, as fast as it can.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

from runtara.bench.load import LoadResult
from runtara.handlers import checkpoints, registration
from runtara.handlers.services import Services
from runtara.protocol import instance_pb2 as pb
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
    services = Services(storage)
    run = uuid.uuid4().hex[:8]
    state = os.urandom(state_size)
    lock = threading.Lock()
    tally = {"recording": False, "stop": False, "operations": 0, "errors": 0, "latencies": []}

    def work(index: int) -> None:
        instance_id = f"bench-storage-{run}-{index}"
        registration.register_instance(
            pb.RegisterInstanceRequest(instance_id=instance_id, tenant_id="bench"), services
        )
        sequence = 0
        while not tally["stop"]:
            sequence += 1
            request = pb.CheckpointRequest(
                instance_id=instance_id, checkpoint_id=f"cp-{sequence}", state=state
            )
            started = time.perf_counter()
            try:
                checkpoints.checkpoint(request, services)
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
