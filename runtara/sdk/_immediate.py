"""One copy of async logic for both APIs: run it over blocking calls.

A coroutine whose awaits all finish without suspending runs to its end with a
single ``send(None)``, on the calling thread, with no event loop. The durable
decorator and the runner are written once as coroutines; the blocking API
runs them with :func:`run_now`, giving them its blocking calls wrapped by
:func:`immediate` and :class:`Immediate`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_now(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine``, which must never suspend, to its end and return its result."""
    try:
        coroutine.send(None)
    except StopIteration as finished:
        return finished.value
    coroutine.close()
    raise RuntimeError("a coroutine given to run_now suspended; only immediate awaits are allowed")


def immediate(function: Callable[..., T]) -> Callable[..., Coroutine[Any, Any, T]]:
    """``function`` as a coroutine function that calls it and never suspends."""

    async def call(*args: Any, **kwargs: Any) -> T:
        return function(*args, **kwargs)

    return call


class Immediate:
    """The methods of a blocking object, as coroutine functions (see :func:`immediate`)."""

    def __init__(self, target: object) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Callable[..., Coroutine[Any, Any, Any]]:
        return immediate(getattr(self._target, name))
