"""A purchase that waits for a person's approval, sent as a custom signal.

The workflow submits a purchase request, then waits for the custom signal
addressed to its checkpoint id ``approve-purchase``, which an operator sends with

    runtara-core custom-signal ID approve-purchase --payload approved

(or ``--payload rejected``). On ``approved`` it places the order; on ``rejected``
it notifies the requester. Either way the instance completes, with the decision in
its output. Another payload is reported and ignored, and the wait goes on.

The wait is an ``@sdk.durable`` step: once the decision has arrived it is saved,
so a relaunched script acts on it without waiting again. The server hands a
custom signal out only once, so a process that dies in the moment between
taking the decision and saving it loses it, and the relaunched script waits for
it to be sent again. The wait polls the server every
RUNTARA_SIGNAL_POLL_INTERVAL_MS (default 1000); a cancel sent meanwhile
(``runtara-core signal ID cancel``) ends it.

Try it with ``runtara-core`` serving on 127.0.0.1:8001 (its default):

    RUNTARA_INSTANCE_ID=purchase-7 RUNTARA_TENANT_ID=acme \\
    RUNTARA_SKIP_CERT_VERIFICATION=true python examples/approval.py

then, from another terminal:

    runtara-core custom-signal purchase-7 approve-purchase --payload approved
"""

from __future__ import annotations

import time

from runtara import sdk

CHECKPOINT_ID = "approve-purchase"
DECISIONS = ("approved", "rejected")


@sdk.durable
def submit_request(request_id: str) -> dict:
    print(f"{request_id}: purchase request submitted", flush=True)
    return {"request": request_id}


@sdk.durable
def wait_for_decision(checkpoint_id: str, instance: sdk.Instance) -> str:
    """The payload of the custom signal for ``checkpoint_id``: approved or rejected."""
    print(
        f"{instance.instance_id}: waiting for `runtara-core custom-signal "
        f"{instance.instance_id} {checkpoint_id} --payload approved|rejected`",
        flush=True,
    )
    interval = instance.config.signal_poll_interval_ms / 1000
    while True:
        signal = instance.poll_signals(checkpoint_id, force=True).custom_signal
        if signal is not None:
            decision = signal.payload.decode("utf-8", "replace").strip()
            if decision in DECISIONS:
                return decision
            print(f"{instance.instance_id}: ignoring {decision!r}", flush=True)
        time.sleep(interval)


@sdk.durable
def place_order(request_id: str) -> dict:
    print(f"{request_id}: approved, order placed", flush=True)
    return {"order": f"PO-{request_id}"}


@sdk.durable
def notify_rejection(request_id: str) -> dict:
    print(f"{request_id}: rejected, requester notified", flush=True)
    return {"notified": True}


def workflow(instance: sdk.Instance) -> dict:
    request = submit_request(instance.instance_id)
    decision = wait_for_decision(CHECKPOINT_ID, instance)
    if decision == "approved":
        outcome = place_order(instance.instance_id)
    else:
        outcome = notify_rejection(instance.instance_id)
    return {**request, "decision": decision, **outcome}


if __name__ == "__main__":
    sdk.main(workflow)
