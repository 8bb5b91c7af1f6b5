"""Steps whose results survive a crash, keyed as upstream's SDK keys them.

A ``@durable`` function's result is stored as the checkpoint
``durable::<function name>::<first argument>`` (``durable::<function name>``
for a step without parameters, ``durable::<function name>::<key text>`` with
an explicit ``key``); a later call with the same key (in this run, or in a
relaunch of the script) returns the stored result without running the function
again. The state also holds a digest of all the call's arguments
(:mod:`runtara.sdk.step_state`): a call with the same key and other arguments
raises :class:`runtara.sdk.StepKeyConflict` instead of returning another
call's result.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from runtara import tracing
from runtara.sdk import _immediate, current, exceptions, step_state
from runtara.sdk.async_instance import AsyncInstance
from runtara.sdk.instance import Instance

logger = logging.getLogger(__name__)

KEY_PREFIX = "durable::"


def durable(
    function: Callable[..., Any] | None = None,
    *,
    key: Callable[..., str] | None = None,
    max_retries: int = 3,
    delay_ms: int = 1000,
) -> Any:
    """Make a step durable; use as ``@durable`` or ``@durable(key=..., max_retries=..., ...)``.

    Calling the step first reads its checkpoint, ``durable::<function name>::<first
    argument>``; ``durable::<function name>`` if it has no parameters; with
    ``key``, a function given the step's arguments and returning a non-empty
    str, ``durable::<function name>::<that text>``. If the checkpoint exists,
    its value is returned and the function does not run; if it was stored by a
    call with other arguments, :class:`runtara.sdk.StepKeyConflict` is raised
    (never retried). Otherwise the function runs, up to ``max_retries`` more
    times while it raises an ``Exception``, waiting ``delay_ms * 2**(k-2)`` ms
    before attempt ``k`` and recording each retry on the server (attempt number
    ``k``, the previous error's text). Its result is saved as JSON; if another
    run saved one first, that one is returned (after the same argument check).
    The value returned is always the JSON round trip, so a first run and a
    resumed one see the same thing. Errors are never saved: the last one is
    raised. :class:`runtara.sdk.Stop` (cancel, pause, sleep) is never retried.

    Plain functions need a registered :class:`Instance`, ``async def`` ones a
    registered :class:`AsyncInstance` (see :func:`runtara.sdk.run`).
    """
    if max_retries < 0 or delay_ms < 0:
        raise ValueError("max_retries and delay_ms must be zero or more")
    if key is not None and not callable(key):
        raise TypeError(f"key must be a function of the step's arguments, not {key!r}")

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        name = function.__name__
        signature = inspect.signature(function)
        first = next(iter(signature.parameters), None)
        user = f"durable function {name}"
        step = _Step(name, _Retry(max_retries, delay_ms / 1000), _key_hint(signature))

        def call_of(args: tuple, kwargs: dict) -> tuple[str, step_state.Call]:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            if key is not None:
                text = _explicit_key(name, key(*args, **kwargs))
            elif first is not None:
                text = str(bound.arguments[first])
            else:
                text = None
            checkpoint_id = KEY_PREFIX + name if text is None else f"{KEY_PREFIX}{name}::{text}"
            return checkpoint_id, step_state.Call.of(name, bound.arguments, args, kwargs)

        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                instance = current.require(AsyncInstance, user)
                checkpoint_id, call = call_of(args, kwargs)
                body = functools.partial(function, *args, **kwargs)
                spans = tracing.for_steps()
                if spans is None:
                    return await _cached(instance, step, checkpoint_id, call, body, asyncio.sleep)
                with spans.step(name, instance.instance_id, checkpoint_id) as span:
                    return await _cached(
                        instance, step, checkpoint_id, call, body, asyncio.sleep, span
                    )

            return run_async

        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            registered = current.require(Instance, user)
            instance = _immediate.Immediate(registered)
            checkpoint_id, call = call_of(args, kwargs)
            body = _immediate.immediate(functools.partial(function, *args, **kwargs))
            pause = _immediate.immediate(time.sleep)
            spans = tracing.for_steps()
            if spans is None:
                return _immediate.run_now(_cached(instance, step, checkpoint_id, call, body, pause))
            with spans.step(name, registered.instance_id, checkpoint_id) as span:
                return _immediate.run_now(
                    _cached(instance, step, checkpoint_id, call, body, pause, span)
                )

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


@attrs.frozen
class _Step:
    name: str
    retry: _Retry
    key_hint: str
    """An explicit ``key`` for this step, as the conflict error suggests it."""


async def _cached(
    instance: Any,
    step: _Step,
    key: str,
    call: step_state.Call,
    body: Callable[[], Awaitable[Any]],
    pause: Callable[[float], Awaitable[None]],
    span: Any = None,
) -> Any:
    """The step's stored value, or run it (with retries) and store its value.

    ``instance`` has AsyncInstance's coroutine methods; ``pause`` waits; ``span``:
    the step's span, when traces are on (see :mod:`runtara.tracing`).
    """
    stored = await instance.get_checkpoint(key)
    if span is not None:
        span.set_attribute(tracing.STEP_STORED, stored is not None)
    if stored is not None:
        return _result_for(step, key, call, stored)
    attempt = 1
    while True:
        try:
            value = await body()
            break
        except exceptions.StepKeyConflict:
            raise  # from a step called inside this one: a bug that no retry mends
        except Exception as error:
            if attempt > step.retry.max_retries:
                raise
            attempt += 1
            wait = step.retry.wait_before(attempt)
            logger.warning("%s failed (%s); attempt %d in %.3f s", key, error, attempt, wait)
            if span is not None:
                span.add_event("runtara.retry", {"runtara.retry.attempt": attempt})
            await pause(wait)
            await instance.record_retry_attempt(key, attempt, str(error))
    encoded = step_state.encode(key, call, value)
    result = await instance.checkpoint(key, encoded)
    return _result_for(step, key, call, result.state if result.found else encoded)


def _result_for(step: _Step, key: str, call: step_state.Call, state: bytes) -> Any:
    """The result in ``state``, if the call that stored it had the arguments of ``call``."""
    stored = step_state.decode(key, state)
    if stored.call is not None and stored.call.digest != call.digest:
        raise exceptions.StepKeyConflict(
            f"durable step {step.name}: checkpoint {key!r} holds the result of "
            f"{stored.call.description}, but this call is {call.description}: the two calls "
            f"share a key but not their arguments. Give the step a key that tells them apart, "
            f"such as @durable(key={step.key_hint})",
            step=step.name,
            key=key,
            stored_call=stored.call.description,
            call=call.description,
        )
    return stored.result


def _explicit_key(name: str, text: Any) -> str:
    if not isinstance(text, str):
        raise TypeError(
            f"the key function of durable function {name} returned {type(text).__name__} "
            f"{text!r}; it must return a non-empty str"
        )
    if not text:
        raise ValueError(f"the key function of durable function {name} returned an empty str")
    return text


def _key_hint(signature: inspect.Signature) -> str:
    """``lambda a, b: f"{a}:{b}"`` over the step's parameters."""
    if not signature.parameters:
        return 'lambda: "another-text"'
    bare = [
        parameter.replace(annotation=inspect.Parameter.empty, default=inspect.Parameter.empty)
        for parameter in signature.parameters.values()
    ]
    parameters = str(inspect.Signature(bare))[1:-1]
    text = ":".join(f"{{{parameter.name}}}" for parameter in bare)
    return f'lambda {parameters}: f"{text}"'
