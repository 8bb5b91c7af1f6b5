"""A trial period: a long durable sleep during which no process runs.

The workflow starts a trial, sleeps SLEEP_SECONDS with
``instance.sleep(..., key="trial-period", exit=True)``, then sends a reminder.
The sleep saves its wake time as the checkpoint ``sleep::trial-period``, leaves
the server holding the instance ``suspended`` until then, and exits the process
with status 0: a sleep of weeks costs no process and survives restarts of the
server. Once the instance is due, a server started with ``--wake-command``
relaunches the script with RUNTARA_INSTANCE_ID and RUNTARA_CHECKPOINT_ID set;
the relaunched script gets the trial's saved start, finds the sleep over, sends
the reminder and completes.

The server relaunches an instance 5 seconds after its wake time at the
earliest (``--wake-grace``). Try it from the repository's root folder:

    runtara-core --wake-command "python examples/long_sleep.py"

and in another terminal:

    SLEEP_SECONDS=10 RUNTARA_INSTANCE_ID=trial-1 RUNTARA_TENANT_ID=acme \\
    RUNTARA_SKIP_CERT_VERIFICATION=true python examples/long_sleep.py

The script exits at once; ``runtara-core show trial-1`` says ``suspended``,
then, some 15 seconds later, ``completed``. (Without ``--wake-command``, run the
same command again once the time is up.)

Environment: SLEEP_SECONDS (default 30), read by the first run only: a relaunch
keeps the saved wake time.
"""

from __future__ import annotations

import os
import time

from runtara import sdk

SLEEP_SECONDS = float(os.environ.get("SLEEP_SECONDS", "30"))


@sdk.durable
def start_trial(account: str) -> dict:
    print(f"{account}: trial started, reminder in {SLEEP_SECONDS:g} s", flush=True)
    return {"account": account, "started_at": time.time()}


@sdk.durable
def send_reminder(account: str, started_at: float) -> dict:
    waited = time.time() - started_at
    print(f"{account}: reminder sent after {waited:.1f} s", flush=True)
    return {"account": account, "reminded_after_seconds": round(waited, 1)}


def workflow(instance: sdk.Instance) -> dict:
    trial = start_trial(instance.instance_id)
    instance.sleep(SLEEP_SECONDS, key="trial-period", exit=True)
    return send_reminder(instance.instance_id, trial["started_at"])


if __name__ == "__main__":
    sdk.main(workflow)
