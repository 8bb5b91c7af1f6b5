"""An order pipeline that can be killed at any point and finishes when started again.

The instance is one order, and its id (RUNTARA_INSTANCE_ID) is the order id. The
pipeline has four steps, each an ``@sdk.durable`` function keyed by the order id:
reserve stock, charge the card, ship, send the confirmation e-mail. A step's result
is saved as a checkpoint as soon as the step returns. Started again with the same
RUNTARA_INSTANCE_ID after a crash (``kill -9``, Ctrl-C, a lost machine), the script
gets the saved results of the steps already done and runs only the others.

What it guarantees:

- A step whose result was saved never runs again.
- The step that was running when the process died runs again: its result was not
  saved, and nothing can tell how far it got. Only that one step, since the steps
  run one after another and each starts once the previous one's result is saved.
- Every step's effect happens exactly once anyway, because each effect is
  idempotent and keyed by step and order: a step appends the line
  ``<step> <order id>`` to ORDER_LOG only if the line is not there yet. A real step
  does the same with what the service it calls offers, such as a payment
  provider's idempotency key or a shipment reference.

So however often the process is killed, once it finishes ORDER_LOG holds each
step's line exactly once, in order. Each step prints ``<step> <order id>: started``
when it runs, which shows what every start of the script ran.

Try it with ``runtara-core`` serving on 127.0.0.1:8001 (its default):

    RUNTARA_INSTANCE_ID=order-17 RUNTARA_TENANT_ID=acme \\
    RUNTARA_SKIP_CERT_VERIFICATION=true python examples/order_pipeline.py

Stop it during a step (Ctrl-C, or ``kill -9`` from another terminal), run the same
command again, and look at ``orders.log`` in EXAMPLES_OUTPUT_DIR.

Environment: ORDER_LOG (the log file, default ``orders.log`` in EXAMPLES_OUTPUT_DIR),
EXAMPLES_OUTPUT_DIR (where the examples write their files, default
``runtara-examples-<user>`` in the system's temporary folder, never the working
directory) and ORDER_STEP_SECONDS (how long each step takes, default 1).
"""

from __future__ import annotations

import getpass
import os
import tempfile
import time
from pathlib import Path

from runtara import sdk

OUTPUT_DIR = Path(
    os.environ.get("EXAMPLES_OUTPUT_DIR")
    or Path(tempfile.gettempdir()) / f"runtara-examples-{getpass.getuser()}"
)
ORDER_LOG = Path(os.environ.get("ORDER_LOG") or OUTPUT_DIR / "orders.log")
STEP_SECONDS = float(os.environ.get("ORDER_STEP_SECONDS", "1"))


def call_service(step: str, order_id: str) -> None:
    """Stand-in for a call to another service. It takes STEP_SECONDS, and its effect
    happens half way through, like a payment made before its confirmation is back."""
    print(f"{step} {order_id}: started", flush=True)
    time.sleep(STEP_SECONDS / 2)
    record_once(f"{step} {order_id}")
    time.sleep(STEP_SECONDS / 2)


def record_once(line: str) -> None:
    """Append ``line`` to ORDER_LOG unless an earlier run of the step already did."""
    if ORDER_LOG.exists() and line in ORDER_LOG.read_text().splitlines():
        return
    ORDER_LOG.parent.mkdir(parents=True, exist_ok=True)
    with ORDER_LOG.open("a") as log:
        log.write(line + "\n")


@sdk.durable
def reserve_stock(order_id: str) -> dict:
    call_service("reserve-stock", order_id)
    return {"reservation": f"R-{order_id}"}


@sdk.durable
def charge_card(order_id: str) -> dict:
    call_service("charge-card", order_id)
    return {"payment": f"P-{order_id}"}


@sdk.durable
def ship(order_id: str, reservation: str) -> dict:
    call_service("ship", order_id)
    return {"tracking": f"T-{reservation}"}


@sdk.durable
def send_email(order_id: str, tracking: str) -> dict:
    call_service("send-email", order_id)
    return {"email": f"your order {order_id} is on its way: {tracking}"}


def workflow(instance: sdk.Instance) -> dict:
    order_id = instance.instance_id
    reservation = reserve_stock(order_id)
    payment = charge_card(order_id)
    shipment = ship(order_id, reservation["reservation"])
    email = send_email(order_id, shipment["tracking"])
    return {"order": order_id, **reservation, **payment, **shipment, **email}


if __name__ == "__main__":
    sdk.main(workflow)
