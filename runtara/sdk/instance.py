"""The blocking API: :class:`Instance` runs :class:`AsyncInstance`'s coroutines
on a private event-loop thread and waits for them.

Each method is derived from the coroutine of the same name, so the two APIs
cannot drift apart.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from runtara import errors
from runtara.client.loop_thread import LoopThread
from runtara.sdk import children, current
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
        return children.start_child(
            self,
            child_id,
            command=command,
            input=input,
            env=env,
            on_parent_cancel=on_parent_cancel,
        )

    def wait_child(self, child_id: str, timeout: float | None = None) -> Any:
        """The child's output (JSON-decoded, None for none) once it completed; raises
        :class:`ChildFailed` if it failed or was cancelled, :class:`ChildTimeout`
        past ``timeout`` seconds (counted from the first wait, across relaunches).
        While the child runs, this instance sleeps durably and leaves its process
        (``sleep(..., exit=True)``, 1 s doubling to 10 s), to be relaunched."""
        return children.wait_child(self, child_id, timeout)

    def wait_children(self, child_ids: Sequence[str], timeout: float | None = None) -> list[Any]:
        """The outputs of ``child_ids``, in order (see :meth:`wait_child`)."""
        return [self.wait_child(child_id, timeout) for child_id in child_ids]

    def close(self) -> None:
        """Stop the heartbeat, close the connection and the loop thread (idempotent)."""
        if self._thread.loop.is_closed():
            return
        try:
            client = getattr(self, "_children_client", None)
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
