"""The instance this process registered last: the one durable functions use.

Upstream keeps one process-wide SDK for its ``#[durable]`` functions (spec
6.3, 6.5); so does this module. Registering adopts an instance, closing it
releases it.
"""

from __future__ import annotations

from typing import TypeVar

from runtara.sdk import exceptions

T = TypeVar("T")

_registered: object | None = None


def adopt(instance: object) -> None:
    global _registered
    _registered = instance


def release(instance: object) -> None:
    global _registered
    if _registered is instance:
        _registered = None


def require(kind: type[T], user: str) -> T:
    """The registered instance if it is a ``kind``, else NoInstance explaining why ``user``
    cannot run."""
    if isinstance(_registered, kind):
        return _registered
    if _registered is None:
        raise exceptions.NoInstance(
            f"{user} needs a registered {kind.__name__}: register one first "
            "(runtara.sdk.run does it)"
        )
    raise exceptions.NoInstance(
        f"{user} needs a registered {kind.__name__}, but the registered instance is "
        f"a {type(_registered).__name__}"
    )
