"""The blocking API: :class:`Instance` runs :class:`AsyncInstance`'s coroutines
on a private event-loop thread and waits for them.

Each method is derived from the coroutine of the same name, so the two APIs
cannot drift apart.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from runtara import errors
from runtara.client.loop_thread import LoopThread
from runtara.protocol import management_pb2 as mpb
from runtara.records import InstanceStatus
from runtara.sdk import children, current, exceptions
from runtara.sdk.async_instance import AsyncInstance
from runtara.sdk.config import SdkConfig


def _blocking(operation: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
    @functools.wraps(operation)
    def call(self: Instance, *args: Any, **kwargs: Any) -> Any:
        return self._run(operation(self._async, *args, **kwargs))

    return call


class Instance:
    """One workflow instance talking to runtara-core, for blocking code.

    The same operations, arguments and behaviour as :class:`AsyncInstance`
    (see there); each call blocks until its reply. The background heartbeat
    runs on the private loop thread while the script works. Use it as a
    ``with`` block, or call :meth:`close`.
    """

    def __init__(self, config: SdkConfig | None = None, *, stop_on_signals: bool = False) -> None:
        self._async = AsyncInstance(config, stop_on_signals=stop_on_signals)
        self._thread = LoopThread(f"runtara-sdk-{self._async.instance_id}")
        self._children_client: children.Management | None = None

    @property
    def config(self) -> SdkConfig:
        return self._async.config

    @property
    def instance_id(self) -> str:
        return self._async.instance_id

    input = property(lambda self: self._async.input, doc=AsyncInstance.input.__doc__)
    input_bytes = property(
        lambda self: self._async.input_bytes, doc=AsyncInstance.input_bytes.__doc__
    )

    def __enter__(self) -> Instance:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @functools.wraps(AsyncInstance.register)
    def register(self, checkpoint_id: str | None = None) -> None:
        self._run(self._async.register(checkpoint_id))
        current.adopt(self)

    checkpoint = _blocking(AsyncInstance.checkpoint)
    get_checkpoint = _blocking(AsyncInstance.get_checkpoint)
    sleep = _blocking(AsyncInstance.sleep)
    heartbeat = _blocking(AsyncInstance.heartbeat)
    completed = _blocking(AsyncInstance.completed)
    failed = _blocking(AsyncInstance.failed)
    suspended = _blocking(AsyncInstance.suspended)
    custom_event = _blocking(AsyncInstance.custom_event)
    record_retry_attempt = _blocking(AsyncInstance.record_retry_attempt)
    poll_signals = _blocking(AsyncInstance.poll_signals)
    acknowledge_signal = _blocking(AsyncInstance.acknowledge_signal)
    status = _blocking(AsyncInstance.status)

    def start_child(
        self,
        child_id: str,
        *,
        command: Sequence[str] | None = None,
        input: Any = None,
        env: dict[str, str] | None = None,
        on_parent_cancel: str = "cancel",
    ) -> str:
        """Start the child instance ``child_id`` once (a durable step keyed by its id,
        over an idempotent start): by default with this instance's own launch
        specification, ``command`` (a list) replacing its command, ``env`` set on
        top of its environment, ``input`` (JSON) as its input. ``on_parent_cancel``:
        ``"cancel"`` stops it when this instance is stopped or cancelled,
        ``"abandon"`` leaves it running. Returns ``child_id``."""
        if on_parent_cancel not in children.POLICIES:
            raise ValueError(
                f"on_parent_cancel must be 'cancel' or 'abandon', not {on_parent_cancel!r}"
            )
        key = f"child::{child_id}"
        if self.get_checkpoint(key) is not None:
            return child_id
        request = mpb.StartChildRequest(
            parent_id=self.instance_id,
            child_id=child_id,
            command=list(command or ()),
            env=[f"{name}={value}" for name, value in (env or {}).items()],
            on_parent_cancel=on_parent_cancel,
        )
        if input is not None:
            request.input = json.dumps(input).encode("utf-8")
        reply = self._run(self._management().call(start_child=request)).start_child
        if not reply.success:
            raise exceptions.ServerError("START_CHILD_REFUSED", reply.error)
        self.checkpoint(key, json.dumps({"child": child_id}).encode())
        return child_id

    def wait_child(self, child_id: str, timeout: float | None = None) -> Any:
        """The child's output (JSON-decoded, None for none) once it completed; raises
        :class:`ChildFailed` if it failed or was cancelled, :class:`ChildTimeout`
        past ``timeout`` seconds (counted from the first wait, across relaunches).
        While the child runs, this instance sleeps durably and leaves its process
        (``sleep(..., exit=True)``, 1 s doubling to 10 s), to be relaunched."""
        reply = self._child_status(child_id)
        if not reply.found:
            raise exceptions.InvalidState(f"{child_id!r} is not a child of {self.instance_id!r}")
        if reply.status not in children.FINAL:
            # when the wait began, saved once, so that the timeout spans relaunches
            began = self.checkpoint(f"wait-child::{child_id}", json.dumps(time.time()).encode())
            since = json.loads(began.existing_state or b"0") if began.found else time.time()
            interval, sleeps = children.FIRST_INTERVAL, 0
            while reply.status not in children.FINAL:
                if timeout is not None and time.time() - since >= timeout:
                    raise children.ChildTimeout(
                        f"child instance {child_id!r} did not finish in {timeout}s"
                    )
                self.sleep(interval, key=f"wait-child::{child_id}::{sleeps}", exit=True)
                sleeps += 1
                interval = min(children.LONGEST_INTERVAL, interval * 2)
                reply = self._child_status(child_id)
        status = children.FINAL[reply.status]
        if status is not InstanceStatus.COMPLETED:
            # A child cancelled because this instance is being stopped: the stop's cancel
            # (raised here under the runner) is what ends this instance, not the child.
            self.poll_signals(force=True)
            error = reply.error if reply.HasField("error") else None
            raise children.ChildFailed(child_id, status, error)
        output = reply.output if reply.HasField("output") else b""
        return json.loads(output) if output else None

    def _child_status(self, child_id: str) -> mpb.GetChildResponse:
        request = mpb.GetChildRequest(parent_id=self.instance_id, child_id=child_id)
        return self._run(self._management().call(get_child=request)).get_child

    def _management(self) -> children.Management:
        if self._children_client is None:
            self._children_client = children.Management(self.instance_id)
        return self._children_client

    def wait_children(self, child_ids: Sequence[str], timeout: float | None = None) -> list[Any]:
        """The outputs of ``child_ids``, in order (see :meth:`wait_child`)."""
        return [self.wait_child(child_id, timeout) for child_id in child_ids]

    def close(self) -> None:
        """Stop the heartbeat, close the connection and the loop thread (idempotent)."""
        if self._thread.loop.is_closed():
            return
        try:
            client = self._children_client
            if client is not None:
                self._children_client = None
                self._thread.run(client.close())
            self._thread.run(self._async.close())
        finally:
            self._thread.stop()
            current.release(self)

    def _run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        if self._thread.loop.is_closed():
            coroutine.close()
            raise errors.ClientError(f"instance {self.instance_id!r}: this Instance is closed")
        return self._thread.run(coroutine)
