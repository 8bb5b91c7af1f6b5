"""The Python instance SDK: what a workflow script uses to talk to runtara-core.

Blocking scripts use :class:`Instance`; asyncio code uses :class:`AsyncInstance`
(the same operations as coroutines). :func:`run` / :func:`main` register the
instance, run a workflow function and report how it ended; :func:`durable`
makes a step's result survive a crash. Configuration comes from the upstream
``RUNTARA_*`` environment variables (:class:`SdkConfig`).

    from runtara import sdk

    @sdk.durable
    def charge(order_id):
        return {"order": order_id, "charged": True}

    def workflow(instance):
        receipt = charge("order-17")
        instance.sleep(24 * 3600, key="cool-off", exit=True)
        return receipt

    if __name__ == "__main__":
        sdk.main(workflow)
"""

from __future__ import annotations

from runtara.errors import (
    BadResponse,
    ClientError,
    ConfigError,
    ConnectFailed,
    ConnectionLost,
    RequestTimeout,
    RuntaraError,
)
from runtara.records import InstanceStatus, SignalType
from runtara.sdk.async_instance import AsyncInstance
from runtara.sdk.children import ChildFailed, ChildTimeout
from runtara.sdk.config import SdkConfig
from runtara.sdk.durable import durable
from runtara.sdk.exceptions import (
    Cancelled,
    InvalidState,
    NoInstance,
    Paused,
    PayloadTooLarge,
    RegistrationRefused,
    ServerError,
    Sleeping,
    StepKeyConflict,
    Stop,
    Superseded,
)
from runtara.sdk.instance import Instance
from runtara.sdk.results import CheckpointResult, CustomSignal, Signal, Signals, Status
from runtara.sdk.runner import Ending, Outcome, main, run, run_async

__all__ = [
    "AsyncInstance",
    "BadResponse",
    "Cancelled",
    "CheckpointResult",
    "ChildFailed",
    "ChildTimeout",
    "ClientError",
    "ConfigError",
    "ConnectFailed",
    "ConnectionLost",
    "CustomSignal",
    "Ending",
    "Instance",
    "InstanceStatus",
    "InvalidState",
    "NoInstance",
    "Outcome",
    "Paused",
    "PayloadTooLarge",
    "RegistrationRefused",
    "RequestTimeout",
    "RuntaraError",
    "SdkConfig",
    "ServerError",
    "Signal",
    "SignalType",
    "Signals",
    "Sleeping",
    "Status",
    "StepKeyConflict",
    "Stop",
    "Superseded",
    "durable",
    "main",
    "run",
    "run_async",
]
