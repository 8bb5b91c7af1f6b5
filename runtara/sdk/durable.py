"""Steps whose results survive a crash, keyed as upstream's SDK keys them.

A ``@durable`` function's first argument is its idempotency key. Its JSON
result is stored as the checkpoint ``durable::<function name>::<key>``; a
later call with the same key (in this run, or in a relaunch of the script)
returns the stored result without running the function again.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from runtara.sdk import _immediate, current, exceptions
from runtara.sdk.async_instance import AsyncInstance
from runtara.sdk.instance import Instance

logger = logging.getLogger(__name__)

KEY_PREFIX = "durable::"


def durable(
    function: Callable[..., Any] | None = None, *, max_retries: int = 3, delay_ms: int = 1000
) -> Any:
    """Make a step durable; use as ``@durable`` or ``@durable(max_retries=..., delay_ms=...)``.

    Calling the step first reads its checkpoint (the key is
    ``durable::<function name>::<first argument>``): if one exists, its JSON
    value is returned and the function does not run. Otherwise the function
    runs, up to ``max_retries`` more times while it raises an ``Exception``,
    waiting ``delay_ms * 2**(k-2)`` ms before attempt ``k`` and recording each
    retry on the server (attempt number ``k``, the previous error's text).
    Its result is saved as JSON; if another run saved one first, that one is
    returned. The value returned is always the JSON round trip, so a first run
    and a resumed one see the same thing. Errors are never saved: the last one
    is raised. :class:`runtara.sdk.Stop` (cancel, pause, sleep) is never retried.

    Plain functions need a registered :class:`Instance`, ``async def`` ones a
    registered :class:`AsyncInstance` (see :func:`runtara.sdk.run`).
    """
    if max_retries < 0 or delay_ms < 0:
        raise ValueError("max_retries and delay_ms must be zero or more")

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        name = function.__name__
        signature = inspect.signature(function)
        if not signature.parameters:
            raise TypeError(f"durable function {name} needs a first parameter: its key")
        first = next(iter(signature.parameters))
        user = f"durable function {name}"
        retry = _Retry(max_retries, delay_ms / 1000)

        def key_of(args: tuple, kwargs: dict) -> str:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            return f"{KEY_PREFIX}{name}::{bound.arguments[first]}"

        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                instance = current.require(AsyncInstance, user)
                body = functools.partial(function, *args, **kwargs)
                return await _cached(instance, key_of(args, kwargs), body, retry, asyncio.sleep)

            return run_async

        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            instance = _immediate.Immediate(current.require(Instance, user))
            body = _immediate.immediate(functools.partial(function, *args, **kwargs))
            pause = _immediate.immediate(time.sleep)
            return _immediate.run_now(_cached(instance, key_of(args, kwargs), body, retry, pause))

        return run

    return decorate if function is None else decorate(function)


@attrs.frozen
class _Retry:
    max_retries: int
    delay: float
    """Seconds before the first retry."""

    def wait_before(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt`` (2 or more)."""
        return self.delay * 2 ** (attempt - 2)


async def _cached(
    instance: Any,
    key: str,
    body: Callable[[], Awaitable[Any]],
    retry: _Retry,
    pause: Callable[[float], Awaitable[None]],
) -> Any:
    """The step's stored value, or run it (with retries) and store its value.

    ``instance`` has AsyncInstance's coroutine methods; ``pause`` waits.
    """
    stored = await instance.get_checkpoint(key)
    if stored is not None:
        return _decode(key, stored)
    attempt = 1
    while True:
        try:
            value = await body()
            break
        except Exception as error:
            if attempt > retry.max_retries:
                raise
            attempt += 1
            wait = retry.wait_before(attempt)
            logger.warning("%s failed (%s); attempt %d in %.3f s", key, error, attempt, wait)
            await pause(wait)
            await instance.record_retry_attempt(key, attempt, str(error))
    try:
        encoded = json.dumps(value).encode("utf-8")
    except (TypeError, ValueError) as error:
        raise TypeError(f"{key}: the result cannot be stored as JSON: {error}") from None
    result = await instance.checkpoint(key, encoded)
    return _decode(key, result.state if result.found else encoded)


def _decode(key: str, state: bytes) -> Any:
    try:
        return json.loads(state)
    except ValueError:
        raise exceptions.InvalidState(
            f"checkpoint {key!r} does not hold JSON: {state[:100]!r}"
        ) from None
