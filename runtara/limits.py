"""Sizes and limits shared by the server, the tools and the SDK.

Each is defined once here; the protocol, the handlers, the operator tools and
the SDK read them from this module.
"""

from __future__ import annotations

import datetime as dt

from runtara import errors

KiB = 1024
MiB = 1024 * KiB

MAX_FRAME_SIZE = 64 * MiB
"""Largest frame payload accepted or produced: exactly 64 MiB is allowed, one byte more is not."""

MAX_SLEEP = dt.timedelta(days=3650)
"""Longest durable sleep a Sleep request may ask for."""

MAX_ID_BYTES = 255
"""Longest instance id, tenant id and event subtype, in UTF-8 bytes."""
MAX_CHECKPOINT_ID_BYTES = 1024
"""Longest checkpoint id, in UTF-8 bytes (a durable step's key holds its function's
name and its first argument)."""
TEXT_LIMITS = {
    "instance_id": MAX_ID_BYTES,
    "tenant_id": MAX_ID_BYTES,
    "subtype": MAX_ID_BYTES,
    "checkpoint_id": MAX_CHECKPOINT_ID_BYTES,
    "queue": MAX_ID_BYTES,
    "key": MAX_ID_BYTES,
    "schedule": MAX_ID_BYTES,
}
"""The identifiers every request, operator action and driver stores, with their
longest length: refused longer at the edge, so that no store meets one (an index
entry has a size limit in PostgreSQL, and ids are shown in every listing)."""


def text_problem(name: str, value: str) -> str | None:
    """Why the text field ``name`` cannot hold ``value`` (NUL, or longer than its
    limit), or None. PostgreSQL's text cannot store NUL and SQLite's string
    functions stop at it, so every driver refuses such text alike."""
    if "\x00" in value:
        return f"{name} must not contain NUL characters"
    limit = TEXT_LIMITS.get(name)
    if limit is not None:
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > limit:
            return f"{name} is {size} bytes long; at most {limit} are allowed"
    return None


def _varint_size(value: int) -> int:
    size = 1
    while value >= 0x80:
        value >>= 7
        size += 1
    return size


def _field_size(length: int) -> int:
    """Bytes of one length-delimited protobuf field (one-byte tag) holding ``length`` bytes."""
    return 1 + _varint_size(length) + length


def signal_reply_size(key: str, payload_size: int) -> int:
    """Bytes of the smallest reply that can deliver a signal: a PollSignals reply
    holding only that signal, keyed by ``key`` (the instance id of an
    instance-wide signal, the checkpoint id of a custom one)."""
    signal = _field_size(len(key.encode("utf-8"))) + _field_size(payload_size) + 2
    return _field_size(_field_size(signal))


def check_signal_payload(key: str, payload_size: int) -> None:
    """Refuse (OperationRefused, naming the limit) a signal no reply frame could ever carry."""
    if signal_reply_size(key, payload_size) > MAX_FRAME_SIZE:
        limit = payload_size - (signal_reply_size(key, payload_size) - MAX_FRAME_SIZE)
        raise errors.OperationRefused(
            f"a signal payload of {payload_size} bytes could never be delivered: the reply "
            f"that carries it must fit in one {MAX_FRAME_SIZE}-byte (64 MiB) frame, which "
            f"allows at most {limit} bytes of payload here"
        )
