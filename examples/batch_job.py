"""A batch job that checkpoints every item, stops on cancel, and pauses and resumes.

The job processes the items 1 to BATCH_ITEMS one after another. Each item is an
``@sdk.durable`` step keyed by its number, so its result is saved as a checkpoint
as soon as it is processed; that is also where the job notices the signals an
operator sends with ``runtara-core signal``:

- ``cancel``: the job stops after the item in progress. The SDK acknowledges the
  cancel, the instance is ``cancelled`` (final) and the script exits 0.
- ``pause``: the job stops after the item in progress, the instance is
  ``suspended`` and the script exits 0. Run it again (after ``runtara-core signal
  ID resume``, or simply relaunched) and it goes on with the next item: the
  items already done return their saved results without being processed again.

Processing an item appends ``item <number>`` to BATCH_OUTPUT, so that file shows
every item processed exactly once across a pause. (A crash, unlike a pause, can
hit between an item's effect and its checkpoint, and that one item is then
processed again on restart; ``order_pipeline.py`` shows how to make that
harmless.)

Try it with ``runtara-core`` serving on 127.0.0.1:8001 (its default):

    RUNTARA_INSTANCE_ID=batch-1 RUNTARA_TENANT_ID=acme \\
    RUNTARA_SKIP_CERT_VERIFICATION=true python examples/batch_job.py

and from another terminal ``runtara-core signal batch-1 pause`` (the script
exits), ``runtara-core signal batch-1 resume``, then run the script again.

Environment: BATCH_ITEMS (default 20), BATCH_ITEM_SECONDS (time per item,
default 0.5), BATCH_OUTPUT (default ``batch-output.txt`` in EXAMPLES_OUTPUT_DIR) and
EXAMPLES_OUTPUT_DIR (where the examples write their files, default
``runtara-examples-<user>`` in the system's temporary folder, never the working
directory).
"""

from __future__ import annotations

import getpass
import os
import tempfile
import time
from pathlib import Path

from runtara import sdk

ITEMS = int(os.environ.get("BATCH_ITEMS", "20"))
ITEM_SECONDS = float(os.environ.get("BATCH_ITEM_SECONDS", "0.5"))
OUTPUT_DIR = Path(
    os.environ.get("EXAMPLES_OUTPUT_DIR")
    or Path(tempfile.gettempdir()) / f"runtara-examples-{getpass.getuser()}"
)
OUTPUT = Path(os.environ.get("BATCH_OUTPUT") or OUTPUT_DIR / "batch-output.txt")


@sdk.durable
def process_item(number: int) -> int:
    time.sleep(ITEM_SECONDS)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    with OUTPUT.open("a") as output:
        output.write(f"item {number}\n")
    print(f"item {number} of {ITEMS} done", flush=True)
    return number * number


def workflow(instance: sdk.Instance) -> dict:
    total = sum(process_item(number) for number in range(1, ITEMS + 1))
    return {"items": ITEMS, "sum_of_squares": total}


if __name__ == "__main__":
    sdk.main(workflow)
