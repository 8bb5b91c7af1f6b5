"""Run a workflow function as an instance, from registration to its last event.

What happens, whatever the workflow does:

- It returns a value: ``completed`` is reported with the value as JSON; exit code 0.
- It raises an ``Exception`` (or returns something JSON cannot encode):
  ``failed`` is reported with ``"<ExceptionType>: <message>"``, the traceback is
  logged; exit code 1.
- A cancel arrives (seen at a checkpoint, a signal poll or a keyed sleep): the
  SDK acknowledges it, which makes the instance ``cancelled`` on the server, and
  raises :class:`~runtara.sdk.Cancelled` out of the workflow's code; nothing
  more is reported; exit code 0.
- A pause arrives (seen at the same places): the SDK acknowledges it and raises
  :class:`~runtara.sdk.Paused`; the runner reports ``suspended``; exit code 0.
  Relaunching the script with ``RUNTARA_CHECKPOINT_ID`` resumes it (durable
  steps already done are not run again).
- ``sleep(..., exit=True)``: the server holds the instance suspended until its
  wake time and :class:`~runtara.sdk.Sleeping` ends the workflow; nothing more
  is reported; exit code 0. The wake scheduler relaunches the script.
- Another process registered the same instance since (a duplicate, or a
  relaunch that took over): the server refuses this one's requests, the SDK
  raises :class:`~runtara.sdk.Superseded` out of the workflow's code, nothing
  more is reported, and the process exits with code 3 after one line saying so.
- The server stays unreachable past RUNTARA_SERVER_WAIT, or an SDK call ends
  with a transport error it does not repeat (``ConnectFailed``,
  ``ConnectionLost``, ``RequestTimeout``, ``BadResponse``; see
  :mod:`runtara.sdk.channel`), whether in the workflow's code, in its durable
  steps, at registration or in the final report: this is not the workflow's
  failure, so nothing more is reported and the process exits with code 75
  (``EX_TEMPFAIL``: it lost its server; its launcher relaunches it) after one
  line saying so. Only exceptions the workflow's own code raises are reported
  ``failed``; a transport error the workflow raises itself (from another
  client, say) is one of them.

The final report (``completed``, ``failed``, ``suspended``) is repeated until
the server acknowledges it, within the wait, so a finished workflow is not
relaunched because its report was lost.

Failures of the SDK itself (a setting it cannot use, a server whose
certificate does not verify, registration refused, an event the server
refuses) are raised from :func:`run`; :func:`main` prints them as one line.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import attrs

from runtara import errors
from runtara.client.connection import CertificateRejected
from runtara.sdk import _immediate, channel, exceptions
from runtara.sdk.async_instance import AsyncInstance
from runtara.sdk.config import SdkConfig
from runtara.sdk.instance import Instance

logger = logging.getLogger(__name__)


class Ending(str, enum.Enum):
    """How a workflow run ended."""

    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PAUSED = "paused"
    SLEEPING = "sleeping"
    SUPERSEDED = "superseded"
    LOST_SERVER = "lost_server"


@attrs.frozen
class Outcome:
    """How a workflow run ended, with its result or the exception that ended it."""

    ending: Ending
    result: Any = None
    """The workflow's return value, when completed."""
    error: BaseException | None = None
    """The exception that ended it, when not completed."""

    @property
    def exit_code(self) -> int:
        """1 when failed, 3 when superseded, 75 when the server was lost, else 0."""
        return EXIT_CODES.get(self.ending, 0)


EXIT_CODES = {Ending.FAILED: 1, Ending.SUPERSEDED: 3, Ending.LOST_SERVER: 75}
"""Exit codes other than 0; 75 is ``EX_TEMPFAIL`` (sysexits.h): try again later."""


def run(workflow: Callable[[Any], Any], config: SdkConfig | None = None) -> Outcome:
    """Register, run ``workflow(instance)`` and report how it ended (see the module).

    A plain function gets an :class:`Instance`; an ``async def`` one gets an
    :class:`AsyncInstance` and runs under ``asyncio.run``. ``config`` defaults to
    the environment.
    """
    if inspect.iscoroutinefunction(workflow):
        return asyncio.run(run_async(workflow, config))
    with Instance(config, stop_on_signals=True) as instance:
        body = _immediate.immediate(lambda: workflow(instance))
        return _immediate.run_now(_supervise(_immediate.Immediate(instance), body))


async def run_async(
    workflow: Callable[[AsyncInstance], Awaitable[Any]], config: SdkConfig | None = None
) -> Outcome:
    """:func:`run` for an ``async def`` workflow, in the running event loop."""
    async with AsyncInstance(config, stop_on_signals=True) as instance:
        return await _supervise(instance, lambda: workflow(instance))


def main(workflow: Callable[[Any], Any], config: SdkConfig | None = None) -> NoReturn:
    """:func:`run`, then exit the process with the outcome's exit code.

    A failure of the SDK itself ends the process with one line on stderr,
    ``<script>: error: <what failed, and what to set>``, and exit code 2 for a
    setting it cannot use (``ConfigError``), 1 for the others (a certificate
    that does not verify, a refused registration ...).
    """
    try:
        outcome = run(workflow, config)
    except errors.RuntaraError as error:
        script = os.path.basename(sys.argv[0]) or "runtara-sdk"
        print(f"{script}: error: {error}", file=sys.stderr)
        sys.exit(2 if isinstance(error, errors.ConfigError) else 1)
    sys.exit(outcome.exit_code)


async def _supervise(instance: Any, body: Callable[[], Awaitable[Any]]) -> Outcome:
    """``instance`` has AsyncInstance's coroutine methods."""
    try:
        await instance.register()
        return await _run_to_the_end(instance, body)
    except exceptions.Superseded as stop:
        logger.error("stopping: %s", stop)
        return Outcome(Ending.SUPERSEDED, error=stop)
    except errors.ClientError as error:
        # A certificate that does not verify is a setting to change: main says which.
        if not channel.from_the_transport(error) or isinstance(error, CertificateRejected):
            raise
        logger.error(
            "stopping: lost the server, so nothing is reported; exit code 75 asks for a "
            "relaunch: %s",
            error,
        )
        return Outcome(Ending.LOST_SERVER, error=error)


async def _run_to_the_end(instance: Any, body: Callable[[], Awaitable[Any]]) -> Outcome:
    try:
        result = await body()
        output = json.dumps(result).encode("utf-8")
    except exceptions.Cancelled as stop:
        return Outcome(Ending.CANCELLED, error=stop)
    except exceptions.Paused as stop:
        await instance.suspended()
        return Outcome(Ending.PAUSED, error=stop)
    except exceptions.Sleeping as stop:
        return Outcome(Ending.SLEEPING, error=stop)
    except Exception as error:
        if channel.from_the_transport(error):
            raise  # an SDK call's, not the workflow's failure: see _supervise
        logger.error("the workflow failed", exc_info=error)
        await instance.failed(_describe(error))
        return Outcome(Ending.FAILED, error=error)
    await instance.completed(output)
    return Outcome(Ending.COMPLETED, result=result)


def _describe(error: Exception) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
