"""What a durable step's checkpoint holds, and how it is read back.

A step's state is a JSON envelope naming the call that stored it::

    {"durable": 1, "args": "sha256:<hex>", "call": "add(1, 2)", "result": 3}

``args`` is a digest of all the call's arguments (bound, defaults applied), so
that a later call with the same key and other arguments is told apart;
``call`` is a short description of the call, for the error naming both.
Arguments JSON cannot encode (clients, connections, other objects) count by
their type's qualified name only, so that they do not make the digest differ
between runs (nor, then, between calls that differ only in such an argument).

States written before envelopes existed hold the result's plain JSON; they are
still read, with no arguments to compare. Only an object with exactly the four
keys above, ``durable`` being the integer 1 and ``args``/``call`` strings, is
read as an envelope (an older state holding such a result would be misread).
"""

from __future__ import annotations

import hashlib
import json
import reprlib
from collections.abc import Mapping
from typing import Any

import attrs

from runtara.sdk import exceptions

FORMAT = 1
CALL_LIMIT = 200
"""The longest call description stored, in characters."""

_ENVELOPE_KEYS = {"durable", "args", "call", "result"}

_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60


@attrs.frozen
class Call:
    """One call of a step: the digest of its arguments and its description."""

    digest: str
    description: str

    @classmethod
    def of(cls, name: str, arguments: Mapping[str, Any], args: tuple, kwargs: dict) -> Call:
        """The call of step ``name``: ``arguments`` bound by name, ``args``/``kwargs`` as passed."""
        return cls(digest(arguments), describe(name, args, kwargs))


@attrs.frozen
class Stored:
    """A step's state read back."""

    result: Any
    call: Call | None
    """The call that stored it; None for a state holding the plain result."""


def digest(arguments: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the arguments as canonical JSON (sorted keys, no spaces)."""
    canonical = {name: _canonical(value) for name, value in arguments.items()}
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def describe(name: str, args: tuple, kwargs: dict) -> str:
    """``name(arg, key=value)`` with shortened reprs, at most :data:`CALL_LIMIT` characters."""
    shown = [_short.repr(value) for value in args]
    shown += [f"{key}={_short.repr(value)}" for key, value in kwargs.items()]
    text = f"{name}({', '.join(shown)})"
    return text if len(text) <= CALL_LIMIT else text[: CALL_LIMIT - 1] + "…"


def encode(key: str, call: Call, result: Any) -> bytes:
    """The state saving ``result`` of ``call``; TypeError if JSON cannot encode the result."""
    envelope = {"durable": FORMAT, "args": call.digest, "call": call.description, "result": result}
    try:
        return json.dumps(envelope).encode("utf-8")
    except (TypeError, ValueError) as error:
        raise TypeError(f"{key}: the result cannot be stored as JSON: {error}") from None


def decode(key: str, state: bytes) -> Stored:
    """The state of checkpoint ``key``, an envelope or a plain JSON result."""
    try:
        value = json.loads(state)
    except ValueError:
        raise exceptions.InvalidState(
            f"checkpoint {key!r} does not hold JSON: {state[:100]!r}"
        ) from None
    if _is_envelope(value):
        return Stored(value["result"], Call(value["args"], value["call"]))
    return Stored(value, None)


def _is_envelope(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and value.keys() == _ENVELOPE_KEYS
        and type(value["durable"]) is int
        and value["durable"] == FORMAT
        and isinstance(value["args"], str)
        and isinstance(value["call"], str)
    )


def _canonical(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_type_of)
    except (TypeError, ValueError):  # keys JSON cannot write or sort, or a cycle
        return json.dumps(_type_of(value))


def _type_of(value: Any) -> dict[str, str]:
    kind = type(value)
    return {"$type": f"{kind.__module__}.{kind.__qualname__}"}
