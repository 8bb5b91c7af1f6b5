"""What the SDK raises, besides the transport errors of :mod:`runtara.errors`.

Failures are :class:`runtara.errors.RuntaraError` subclasses: the server's
``RpcError`` (:class:`ServerError`), a refused registration, a request too large
to send, unreadable stored state, two calls of a durable step sharing a key
with different arguments, a missing registered instance. Transport
failures stay :class:`runtara.errors.ClientError` subclasses (``ConnectFailed``,
``ConnectionLost``, ``RequestTimeout``, ``BadResponse``).

Requests to stop are not errors: :class:`Stop` and its subclasses derive from
``BaseException`` (like ``KeyboardInterrupt``), so that ``except Exception`` in
a workflow, and the retries of :func:`runtara.sdk.durable`, let them through
to :func:`runtara.sdk.run`.
"""

from __future__ import annotations

import datetime as dt

from runtara import errors


class ServerError(errors.RuntaraError):
    """The server answered with an ``RpcError`` (upstream codes such as
    ``CHECKPOINT_ERROR``; ``OVERLOADED`` once retries ran out)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


RegistrationRefused = errors.RegistrationRefused
"""The server refused to register the instance; the message says why."""


class PayloadTooLarge(errors.RuntaraError, ValueError):
    """A request would exceed the 64 MiB frame limit; it was not sent."""


class InvalidState(errors.RuntaraError, ValueError):
    """A checkpoint the SDK wrote holds bytes it cannot read back."""


class StepKeyConflict(errors.RuntaraError, ValueError):
    """A durable step's checkpoint holds the result of a call with other arguments.

    Two calls share a key they should not: a bug in the workflow, fixed by giving
    the step a ``key`` that tells them apart. The message names both calls.
    """

    def __init__(self, message: str, *, step: str, key: str, stored_call: str, call: str) -> None:
        super().__init__(message)
        self.step = step
        self.key = key
        """The checkpoint id the two calls share."""
        self.stored_call = stored_call
        """The call whose result is stored, as the state describes it."""
        self.call = call
        """The call that found it."""


class NoInstance(errors.RuntaraError):
    """A durable function ran with no registered instance of the right kind."""


class Stop(BaseException):
    """The workflow must stop now; :func:`runtara.sdk.run` ends it cleanly (exit code 0)."""


class Cancelled(Stop):
    """The instance was cancelled; the cancel is acknowledged (the instance is ``cancelled``)."""

    def __init__(self, payload: bytes = b"") -> None:
        super().__init__(f"instance cancelled{_reason(payload)}")
        self.payload = payload


class Paused(Stop):
    """The instance was asked to pause; the pause is acknowledged. The runner then
    reports ``suspended``; a relaunch with ``RUNTARA_CHECKPOINT_ID`` resumes it."""

    def __init__(self, payload: bytes = b"") -> None:
        super().__init__(f"instance paused{_reason(payload)}")
        self.payload = payload


class Superseded(Stop):
    """Another process registered this instance after this one did: the newest
    registration wins, so this process must stop (nothing it sends is applied)."""


class Sleeping(Stop):
    """The server holds the instance suspended until ``wake_at``; the connection is
    closed and the process should exit, to be relaunched at that time."""

    def __init__(self, checkpoint_id: str, wake_at: float) -> None:
        due = dt.datetime.fromtimestamp(wake_at, dt.timezone.utc).isoformat(timespec="milliseconds")
        super().__init__(f"sleeping until {due} (checkpoint {checkpoint_id!r})")
        self.checkpoint_id = checkpoint_id
        self.wake_at = wake_at
        """Wall-clock time (seconds since the epoch) the instance is due."""


def _reason(payload: bytes) -> str:
    return f": {payload.decode('utf-8', 'replace')}" if payload else ""
