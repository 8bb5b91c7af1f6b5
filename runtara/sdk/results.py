"""What the SDK's operations return, built from the replies."""

from __future__ import annotations

import attrs

from runtara import mapping, records
from runtara.protocol import instance_pb2 as pb


@attrs.frozen
class Signal:
    """The instance-wide signal pending on the server."""

    type: records.SignalType
    payload: bytes = b""

    @classmethod
    def from_wire(cls, message: pb.Signal) -> Signal:
        return cls(mapping.signal_or_cancel(message.signal_type), message.payload)


@attrs.frozen
class CustomSignal:
    """A signal addressed to one checkpoint id; the server hands it out once."""

    checkpoint_id: str
    payload: bytes = b""

    @classmethod
    def from_wire(cls, message: pb.CustomSignal) -> CustomSignal:
        return cls(message.checkpoint_id, message.payload)


@attrs.frozen(kw_only=True)
class Signals:
    """The signals one reply reported (a poll, or a checkpoint)."""

    pending_signal: Signal | None = None
    custom_signal: CustomSignal | None = None

    @property
    def should_cancel(self) -> bool:
        return self.pending_signal is not None and (
            self.pending_signal.type is records.SignalType.CANCEL
        )

    @property
    def should_pause(self) -> bool:
        return self.pending_signal is not None and (
            self.pending_signal.type is records.SignalType.PAUSE
        )

    @property
    def should_exit(self) -> bool:
        """Cancel or pause is pending."""
        return self.should_cancel or self.should_pause

    @classmethod
    def from_wire(cls, message: pb.PollSignalsResponse) -> Signals:
        return cls(**_signal_fields(message, "signal"))


@attrs.frozen(kw_only=True)
class CheckpointResult(Signals):
    """The reply to a checkpoint: whether the id already held a state, and signals."""

    found: bool
    """The checkpoint already existed: ``state`` is the stored one, and the sent one was ignored."""
    state: bytes = b""

    @property
    def existing_state(self) -> bytes | None:
        """The stored state when resuming, else None."""
        return self.state if self.found else None

    @classmethod
    def from_wire(cls, message: pb.CheckpointResponse) -> CheckpointResult:
        return cls(
            found=message.found, state=message.state, **_signal_fields(message, "pending_signal")
        )


def _signal_fields(
    message: pb.PollSignalsResponse | pb.CheckpointResponse, pending: str
) -> dict[str, Signal | CustomSignal | None]:
    """The two signal fields of a reply; ``pending`` names its instance-wide signal field."""
    return {
        "pending_signal": (
            Signal.from_wire(getattr(message, pending)) if message.HasField(pending) else None
        ),
        "custom_signal": (
            CustomSignal.from_wire(message.custom_signal)
            if message.HasField("custom_signal")
            else None
        ),
    }


@attrs.frozen(kw_only=True)
class Status:
    """An instance's status as the server reports it."""

    instance_id: str
    status: records.InstanceStatus | None
    """None when the server does not know the instance."""
    checkpoint_id: str | None = None
    """The checkpoint saved last."""
    started_at_ms: int = 0
    finished_at_ms: int | None = None
    output: bytes | None = None
    error: str | None = None

    @classmethod
    def from_wire(cls, message: pb.GetInstanceStatusResponse) -> Status:
        return cls(
            instance_id=message.instance_id,
            status=mapping.status_from_wire(message.status),
            checkpoint_id=mapping.optional(message, "checkpoint_id"),
            started_at_ms=message.started_at_ms,
            finished_at_ms=mapping.optional(message, "finished_at_ms"),
            output=mapping.optional(message, "output"),
            error=mapping.optional(message, "error"),
        )
