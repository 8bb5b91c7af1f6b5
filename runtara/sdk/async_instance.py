"""The instance's operations as coroutines.

:class:`AsyncInstance` is the one implementation of every operation;
:class:`runtara.sdk.Instance` runs these same coroutines on a private event
loop thread for blocking scripts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from runtara import errors, mapping, records
from runtara.protocol import instance_pb2 as pb
from runtara.sdk import current, exceptions
from runtara.sdk.channel import Channel, Retry
from runtara.sdk.config import SdkConfig
from runtara.sdk.results import CheckpointResult, Signals, Status

logger = logging.getLogger(__name__)

MAX_SLEEP = 3650 * 24 * 3600
"""Seconds; the server refuses longer sleeps."""
SLEEP_PREFIX = "sleep::"
CONFIRM_INTERVAL = 0.02
"""Seconds between the status polls that confirm a sleep before exiting."""


class AsyncInstance:
    """One workflow instance talking to runtara-core, for asyncio code.

    ``config`` defaults to :meth:`SdkConfig.from_env`. With ``stop_on_signals``
    (as under :func:`runtara.sdk.run`), a pending cancel or pause seen by
    :meth:`checkpoint`, :meth:`poll_signals` or a keyed :meth:`sleep` is
    acknowledged and raised as :class:`~runtara.sdk.Cancelled` or
    :class:`~runtara.sdk.Paused`, and a resume is acknowledged; without it,
    signals are only reported. Use it as ``async with`` to close it.
    """

    def __init__(self, config: SdkConfig | None = None, *, stop_on_signals: bool = False) -> None:
        self.config = SdkConfig.from_env() if config is None else config
        self.stop_on_signals = stop_on_signals
        self._channel = Channel(self.config)
        self._heartbeat: asyncio.Task | None = None
        self._last_poll: float | None = None

    @property
    def instance_id(self) -> str:
        return self.config.instance_id

    @property
    def input_bytes(self) -> bytes | None:
        """The input the instance was started with (``runtara-core start --input``),
        exactly as given; None when it was started without one."""
        if self.config.input_file is None:
            return None
        with open(self.config.input_file, "rb") as source:
            return source.read()

    @property
    def input(self) -> Any:
        """The input as JSON (None without one); raises InvalidState if it is not JSON
        (read :attr:`input_bytes` then)."""
        data = self.input_bytes
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError as error:
            raise exceptions.InvalidState(
                f"the input of {self.instance_id!r} is not JSON ({error}); read input_bytes"
            ) from None

    async def __aenter__(self) -> AsyncInstance:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    async def register(self, checkpoint_id: str | None = None) -> None:
        """Register the instance as running, naming ``checkpoint_id`` (default: the
        configured RUNTARA_CHECKPOINT_ID, if any) when it resumes from one.

        Starts the background heartbeat and makes this the instance
        :func:`runtara.sdk.durable` functions use. Raises RegistrationRefused.
        """
        await self._register(self.config.checkpoint_id if checkpoint_id is None else checkpoint_id)
        interval = self.config.heartbeat_interval_ms / 1000
        if interval > 0 and self._heartbeat is None:
            self._heartbeat = asyncio.get_running_loop().create_task(self._beat(interval))
        current.adopt(self)

    async def checkpoint(self, checkpoint_id: str, state: bytes) -> CheckpointResult:
        """Save ``state`` under ``checkpoint_id`` unless that id already holds one,
        in which case the result carries the stored state (``found``)."""
        request = pb.CheckpointRequest(
            instance_id=self.instance_id, checkpoint_id=checkpoint_id, state=state
        )
        reply = await self._channel.call(pb.RpcRequest(checkpoint=request))
        result = CheckpointResult.from_wire(reply)
        await self._obey(result)
        return result

    async def get_checkpoint(self, checkpoint_id: str) -> bytes | None:
        """The state stored under ``checkpoint_id``, or None; reports no signals."""
        request = pb.GetCheckpointRequest(instance_id=self.instance_id, checkpoint_id=checkpoint_id)
        reply = await self._channel.call(pb.RpcRequest(get_checkpoint=request))
        return reply.state if reply.found else None

    async def sleep(self, seconds: float, *, key: str | None = None, exit: bool = False) -> None:
        """Sleep durably: the server records the wake time and answers after it.

        With ``key``, the wake time is first saved as the checkpoint
        ``sleep::<key>``, so a relaunched script calling this again only sleeps
        what remains (nothing once it has passed). With ``exit=True`` (needs
        ``key``) the server is left holding the instance suspended until then,
        the connection is closed, and :class:`~runtara.sdk.Sleeping` is raised so
        that the process exits, to be relaunched when the instance is due.

        If the server goes away during the sleep, the SDK waits for it (see
        :mod:`runtara.sdk.channel`), registers again if the server left the
        instance suspended, and sleeps only what remains of the duration.
        """
        if not 0 <= seconds <= MAX_SLEEP:
            raise ValueError(f"cannot sleep {seconds} s: from 0 to {MAX_SLEEP} s (3650 days)")
        if exit and key is None:
            raise ValueError("sleep(exit=True) needs a key, to know on relaunch that it slept")
        if key is None:
            await self._sleep_request(round(seconds * 1000))
            return
        checkpoint_id = SLEEP_PREFIX + key
        wake_at = await self._wake_time(checkpoint_id, time.time() + seconds)
        remaining_ms = round((wake_at - time.time()) * 1000)
        if remaining_ms <= 0:
            return
        if exit:
            await self._sleep_and_exit(checkpoint_id, remaining_ms, wake_at)
        else:
            await self._sleep_request(remaining_ms)

    async def heartbeat(self) -> None:
        """Report that the instance is alive."""
        await self._event(pb.EVENT_HEARTBEAT)

    async def completed(self, output: bytes = b"") -> None:
        """Report success with ``output``; the instance is then final."""
        await self._event(pb.EVENT_COMPLETED, output)

    async def failed(self, message: str) -> None:
        """Report failure with ``message``; the instance is then final."""
        await self._event(pb.EVENT_FAILED, message.encode("utf-8"))

    async def suspended(self) -> None:
        """Report that the instance stops here, to be resumed from its last checkpoint."""
        await self._event(pb.EVENT_SUSPENDED)

    async def custom_event(self, subtype: str, payload: bytes = b"") -> None:
        """Record an event of the workflow's own ``subtype``."""
        await self._event(pb.EVENT_CUSTOM, payload, subtype=subtype)

    async def record_retry_attempt(
        self, checkpoint_id: str, attempt: int, error_message: str | None = None
    ) -> None:
        """Record retry ``attempt`` of the step ``checkpoint_id`` (stored once the call returns)."""
        request = pb.RetryAttemptEvent(
            instance_id=self.instance_id,
            checkpoint_id=checkpoint_id,
            attempt_number=attempt,
            timestamp_ms=_now_ms(),
        )
        if error_message is not None:
            request.error_message = error_message
        await self._channel.call_no_reply(pb.RpcRequest(retry_attempt=request))

    async def poll_signals(
        self, checkpoint_id: str | None = None, *, force: bool = False
    ) -> Signals:
        """The pending signal, and the custom signal of ``checkpoint_id`` if one is given.

        At most one poll per RUNTARA_SIGNAL_POLL_INTERVAL_MS reaches the server;
        within the interval an empty result comes back at once, unless ``force``.
        """
        now = time.monotonic()
        interval = self.config.signal_poll_interval_ms / 1000
        if not force and self._last_poll is not None and now - self._last_poll < interval:
            return Signals()
        self._last_poll = now
        request = pb.PollSignalsRequest(instance_id=self.instance_id)
        if checkpoint_id is not None:
            request.checkpoint_id = checkpoint_id
        reply = await self._channel.call(pb.RpcRequest(poll_signals=request))
        signals = Signals.from_wire(reply)
        await self._obey(signals)
        return signals

    async def acknowledge_signal(
        self, signal_type: records.SignalType, acknowledged: bool = True
    ) -> None:
        """Acknowledge the pending signal of ``signal_type`` (stored once the call returns);
        acknowledging a cancel makes the instance ``cancelled``."""
        request = pb.SignalAck(
            instance_id=self.instance_id,
            signal_type=mapping.SIGNAL_TO_WIRE[signal_type],
            acknowledged=acknowledged,
        )
        await self._channel.call_no_reply(pb.RpcRequest(signal_ack=request))

    async def status(self, instance_id: str | None = None) -> Status:
        """The status of this instance (or of ``instance_id``) on the server."""
        request = pb.GetInstanceStatusRequest(instance_id=instance_id or self.instance_id)
        reply = await self._channel.call(pb.RpcRequest(get_instance_status=request))
        return Status.from_wire(reply)

    async def close(self) -> None:
        """Stop the background heartbeat and close the connection."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        await self._channel.close()
        current.release(self)

    # --- internals ------------------------------------------------------------

    async def _event(self, event_type: int, payload: bytes = b"", **fields: str) -> None:
        event = pb.InstanceEvent(
            instance_id=self.instance_id,
            event_type=event_type,
            payload=payload,
            timestamp_ms=_now_ms(),
            **fields,
        )
        reply = await self._channel.call(pb.RpcRequest(instance_event=event))
        if not reply.success:
            raise exceptions.ServerError("EVENT_ERROR", reply.error or "Unknown error")

    async def _register(self, checkpoint_id: str | None) -> None:
        request = pb.RegisterInstanceRequest(
            instance_id=self.instance_id, tenant_id=self.config.tenant_id
        )
        if checkpoint_id is not None:
            request.checkpoint_id = checkpoint_id
        reply = await self._channel.call(pb.RpcRequest(register_instance=request))
        if not reply.success:
            raise exceptions.RegistrationRefused(
                f"instance {self.instance_id!r} not registered: {reply.error}"
            )
        if reply.HasField("registration"):
            # A repeat after a lost reply was given a newer number: this one.
            self._channel.registration = reply.registration

    async def _obey(self, signals: Signals) -> None:
        signal = signals.pending_signal
        if signal is None or not self.stop_on_signals:
            return
        await self.acknowledge_signal(signal.type)
        if signal.type is records.SignalType.CANCEL:
            raise exceptions.Cancelled(signal.payload)
        if signal.type is records.SignalType.PAUSE:
            raise exceptions.Paused(signal.payload)

    async def _beat(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.heartbeat()
            except errors.ClientError as error:  # the channel logs the server's absence
                logger.debug("background heartbeat of %r failed: %s", self.instance_id, error)
            except errors.RuntaraError as error:
                logger.warning("background heartbeat of %r failed: %s", self.instance_id, error)
            except exceptions.Superseded:
                return  # the workflow's next call raises it too

    def _sleep_message(self, duration_ms: int) -> pb.RpcRequest:
        return pb.RpcRequest(
            sleep=pb.SleepRequest(instance_id=self.instance_id, duration_ms=duration_ms)
        )

    async def _sleep_request(self, duration_ms: int) -> None:
        """Sleep ``duration_ms`` on the server. When the reply is lost (the server
        went away), wait for the server, wake the instance if the lost sleep left
        it suspended, and send only the time that remains."""
        loop = asyncio.get_running_loop()
        wake_at = loop.time() + duration_ms / 1000
        retry = Retry(self._channel)
        while True:
            timeout = duration_ms / 1000 + self.config.request_timeout
            try:
                await self._channel.call_once(self._sleep_message(duration_ms), timeout=timeout)
                return
            except errors.ClientError as error:
                await retry.after(error)
            await self._wake_after_lost_sleep()
            duration_ms = round((wake_at - loop.time()) * 1000)
            if duration_ms <= 0:
                return

    async def _wake_after_lost_sleep(self) -> None:
        """A sleep whose reply was lost may have suspended the instance, and a
        suspended instance can neither sleep nor save checkpoints: register
        again, which makes it running (and records ``started``)."""
        if (await self.status()).status is not records.InstanceStatus.SUSPENDED:
            return
        await self.heartbeat()  # Superseded if another process registered since
        await self._register(None)
        logger.info(
            "instance %r registered again (registration %s): the server lost its sleep",
            self.instance_id,
            self._channel.registration,
        )

    async def _wake_time(self, checkpoint_id: str, wake_at: float) -> float:
        """The wake time saved under ``checkpoint_id``, saving ``wake_at`` if none is."""
        state = json.dumps({"wake_at_ms": round(wake_at * 1000)}).encode()
        result = await self.checkpoint(checkpoint_id, state)
        if not result.found:
            return wake_at
        try:
            return json.loads(result.state)["wake_at_ms"] / 1000
        except (ValueError, KeyError, TypeError):
            raise exceptions.InvalidState(
                f"checkpoint {checkpoint_id!r} does not hold a wake time: {result.state[:100]!r}"
            ) from None

    async def _sleep_and_exit(self, checkpoint_id: str, duration_ms: int, wake_at: float) -> None:
        """Start a sleep without waiting for its reply, confirm the server holds the
        instance suspended, then close and raise Sleeping.

        The sleep's stream is abandoned at once, so when its timer fires the
        server leaves the instance suspended, due for waking.
        """
        await self._channel.send(self._sleep_message(duration_ms))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.request_timeout
        while (status := (await self.status()).status) is records.InstanceStatus.RUNNING:
            if loop.time() > deadline:
                raise self._channel.transport_error(
                    errors.RequestTimeout(
                        f"sleep: the server did not suspend the instance within "
                        f"{self.config.request_timeout:g}s"
                    )
                )
            await asyncio.sleep(CONFIRM_INTERVAL)
        if status is not records.InstanceStatus.SUSPENDED:
            raise exceptions.ServerError(
                "SLEEP_ERROR",
                f"instance {self.instance_id!r} is {status.value if status else 'unknown'} "
                "instead of sleeping",
            )
        await self.close()
        raise exceptions.Sleeping(checkpoint_id, wake_at)


def _now_ms() -> int:
    return int(time.time() * 1000)
