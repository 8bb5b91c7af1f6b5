from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InstanceEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_HEARTBEAT: _ClassVar[InstanceEventType]
    EVENT_COMPLETED: _ClassVar[InstanceEventType]
    EVENT_FAILED: _ClassVar[InstanceEventType]
    EVENT_SUSPENDED: _ClassVar[InstanceEventType]
    EVENT_CUSTOM: _ClassVar[InstanceEventType]

class SignalType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIGNAL_CANCEL: _ClassVar[SignalType]
    SIGNAL_PAUSE: _ClassVar[SignalType]
    SIGNAL_RESUME: _ClassVar[SignalType]

class InstanceStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATUS_UNKNOWN: _ClassVar[InstanceStatus]
    STATUS_PENDING: _ClassVar[InstanceStatus]
    STATUS_RUNNING: _ClassVar[InstanceStatus]
    STATUS_SUSPENDED: _ClassVar[InstanceStatus]
    STATUS_COMPLETED: _ClassVar[InstanceStatus]
    STATUS_FAILED: _ClassVar[InstanceStatus]
    STATUS_CANCELLED: _ClassVar[InstanceStatus]
EVENT_HEARTBEAT: InstanceEventType
EVENT_COMPLETED: InstanceEventType
EVENT_FAILED: InstanceEventType
EVENT_SUSPENDED: InstanceEventType
EVENT_CUSTOM: InstanceEventType
SIGNAL_CANCEL: SignalType
SIGNAL_PAUSE: SignalType
SIGNAL_RESUME: SignalType
STATUS_UNKNOWN: InstanceStatus
STATUS_PENDING: InstanceStatus
STATUS_RUNNING: InstanceStatus
STATUS_SUSPENDED: InstanceStatus
STATUS_COMPLETED: InstanceStatus
STATUS_FAILED: InstanceStatus
STATUS_CANCELLED: InstanceStatus

class RpcRequest(_message.Message):
    __slots__ = ("register_instance", "sleep", "instance_event", "instance_event_batch", "get_instance_status", "checkpoint", "get_checkpoint", "poll_signals", "signal_ack", "retry_attempt", "registration")
    REGISTER_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    SLEEP_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_EVENT_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_EVENT_BATCH_FIELD_NUMBER: _ClassVar[int]
    GET_INSTANCE_STATUS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    GET_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    POLL_SIGNALS_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_ACK_FIELD_NUMBER: _ClassVar[int]
    RETRY_ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    REGISTRATION_FIELD_NUMBER: _ClassVar[int]
    register_instance: RegisterInstanceRequest
    sleep: SleepRequest
    instance_event: InstanceEvent
    instance_event_batch: InstanceEventBatch
    get_instance_status: GetInstanceStatusRequest
    checkpoint: CheckpointRequest
    get_checkpoint: GetCheckpointRequest
    poll_signals: PollSignalsRequest
    signal_ack: SignalAck
    retry_attempt: RetryAttemptEvent
    registration: int
    def __init__(self, register_instance: _Optional[_Union[RegisterInstanceRequest, _Mapping]] = ..., sleep: _Optional[_Union[SleepRequest, _Mapping]] = ..., instance_event: _Optional[_Union[InstanceEvent, _Mapping]] = ..., instance_event_batch: _Optional[_Union[InstanceEventBatch, _Mapping]] = ..., get_instance_status: _Optional[_Union[GetInstanceStatusRequest, _Mapping]] = ..., checkpoint: _Optional[_Union[CheckpointRequest, _Mapping]] = ..., get_checkpoint: _Optional[_Union[GetCheckpointRequest, _Mapping]] = ..., poll_signals: _Optional[_Union[PollSignalsRequest, _Mapping]] = ..., signal_ack: _Optional[_Union[SignalAck, _Mapping]] = ..., retry_attempt: _Optional[_Union[RetryAttemptEvent, _Mapping]] = ..., registration: _Optional[int] = ...) -> None: ...

class RpcResponse(_message.Message):
    __slots__ = ("register_instance", "sleep", "instance_event", "get_instance_status", "checkpoint", "get_checkpoint", "poll_signals", "error")
    REGISTER_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    SLEEP_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_EVENT_FIELD_NUMBER: _ClassVar[int]
    GET_INSTANCE_STATUS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    GET_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    POLL_SIGNALS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    register_instance: RegisterInstanceResponse
    sleep: SleepResponse
    instance_event: InstanceEventResponse
    get_instance_status: GetInstanceStatusResponse
    checkpoint: CheckpointResponse
    get_checkpoint: GetCheckpointResponse
    poll_signals: PollSignalsResponse
    error: RpcError
    def __init__(self, register_instance: _Optional[_Union[RegisterInstanceResponse, _Mapping]] = ..., sleep: _Optional[_Union[SleepResponse, _Mapping]] = ..., instance_event: _Optional[_Union[InstanceEventResponse, _Mapping]] = ..., get_instance_status: _Optional[_Union[GetInstanceStatusResponse, _Mapping]] = ..., checkpoint: _Optional[_Union[CheckpointResponse, _Mapping]] = ..., get_checkpoint: _Optional[_Union[GetCheckpointResponse, _Mapping]] = ..., poll_signals: _Optional[_Union[PollSignalsResponse, _Mapping]] = ..., error: _Optional[_Union[RpcError, _Mapping]] = ...) -> None: ...

class RpcError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class RegisterInstanceRequest(_message.Message):
    __slots__ = ("instance_id", "tenant_id", "checkpoint_id")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    tenant_id: str
    checkpoint_id: str
    def __init__(self, instance_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., checkpoint_id: _Optional[str] = ...) -> None: ...

class RegisterInstanceResponse(_message.Message):
    __slots__ = ("success", "error", "registration")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REGISTRATION_FIELD_NUMBER: _ClassVar[int]
    success: bool
    error: str
    registration: int
    def __init__(self, success: _Optional[bool] = ..., error: _Optional[str] = ..., registration: _Optional[int] = ...) -> None: ...

class CheckpointRequest(_message.Message):
    __slots__ = ("instance_id", "checkpoint_id", "state")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    checkpoint_id: str
    state: bytes
    def __init__(self, instance_id: _Optional[str] = ..., checkpoint_id: _Optional[str] = ..., state: _Optional[bytes] = ...) -> None: ...

class CheckpointResponse(_message.Message):
    __slots__ = ("found", "state", "pending_signal", "custom_signal")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PENDING_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    found: bool
    state: bytes
    pending_signal: Signal
    custom_signal: CustomSignal
    def __init__(self, found: _Optional[bool] = ..., state: _Optional[bytes] = ..., pending_signal: _Optional[_Union[Signal, _Mapping]] = ..., custom_signal: _Optional[_Union[CustomSignal, _Mapping]] = ...) -> None: ...

class GetCheckpointRequest(_message.Message):
    __slots__ = ("instance_id", "checkpoint_id")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    checkpoint_id: str
    def __init__(self, instance_id: _Optional[str] = ..., checkpoint_id: _Optional[str] = ...) -> None: ...

class GetCheckpointResponse(_message.Message):
    __slots__ = ("found", "state")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    found: bool
    state: bytes
    def __init__(self, found: _Optional[bool] = ..., state: _Optional[bytes] = ...) -> None: ...

class SleepRequest(_message.Message):
    __slots__ = ("instance_id", "duration_ms", "checkpoint_id", "state")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    duration_ms: int
    checkpoint_id: str
    state: bytes
    def __init__(self, instance_id: _Optional[str] = ..., duration_ms: _Optional[int] = ..., checkpoint_id: _Optional[str] = ..., state: _Optional[bytes] = ...) -> None: ...

class SleepResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InstanceEvent(_message.Message):
    __slots__ = ("instance_id", "event_type", "checkpoint_id", "payload", "timestamp_ms", "subtype")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    SUBTYPE_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    event_type: InstanceEventType
    checkpoint_id: str
    payload: bytes
    timestamp_ms: int
    subtype: str
    def __init__(self, instance_id: _Optional[str] = ..., event_type: _Optional[_Union[InstanceEventType, str]] = ..., checkpoint_id: _Optional[str] = ..., payload: _Optional[bytes] = ..., timestamp_ms: _Optional[int] = ..., subtype: _Optional[str] = ...) -> None: ...

class InstanceEventResponse(_message.Message):
    __slots__ = ("success", "error")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    success: bool
    error: str
    def __init__(self, success: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class InstanceEventBatch(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[InstanceEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[InstanceEvent, _Mapping]]] = ...) -> None: ...

class RetryAttemptEvent(_message.Message):
    __slots__ = ("instance_id", "checkpoint_id", "attempt_number", "timestamp_ms", "error_message")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    checkpoint_id: str
    attempt_number: int
    timestamp_ms: int
    error_message: str
    def __init__(self, instance_id: _Optional[str] = ..., checkpoint_id: _Optional[str] = ..., attempt_number: _Optional[int] = ..., timestamp_ms: _Optional[int] = ..., error_message: _Optional[str] = ...) -> None: ...

class Signal(_message.Message):
    __slots__ = ("instance_id", "signal_type", "payload")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_TYPE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    signal_type: SignalType
    payload: bytes
    def __init__(self, instance_id: _Optional[str] = ..., signal_type: _Optional[_Union[SignalType, str]] = ..., payload: _Optional[bytes] = ...) -> None: ...

class CustomSignal(_message.Message):
    __slots__ = ("checkpoint_id", "payload")
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    checkpoint_id: str
    payload: bytes
    def __init__(self, checkpoint_id: _Optional[str] = ..., payload: _Optional[bytes] = ...) -> None: ...

class SignalAck(_message.Message):
    __slots__ = ("instance_id", "signal_type", "acknowledged")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_TYPE_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    signal_type: SignalType
    acknowledged: bool
    def __init__(self, instance_id: _Optional[str] = ..., signal_type: _Optional[_Union[SignalType, str]] = ..., acknowledged: _Optional[bool] = ...) -> None: ...

class PollSignalsRequest(_message.Message):
    __slots__ = ("instance_id", "checkpoint_id")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    checkpoint_id: str
    def __init__(self, instance_id: _Optional[str] = ..., checkpoint_id: _Optional[str] = ...) -> None: ...

class PollSignalsResponse(_message.Message):
    __slots__ = ("signal", "custom_signal")
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    signal: Signal
    custom_signal: CustomSignal
    def __init__(self, signal: _Optional[_Union[Signal, _Mapping]] = ..., custom_signal: _Optional[_Union[CustomSignal, _Mapping]] = ...) -> None: ...

class GetInstanceStatusRequest(_message.Message):
    __slots__ = ("instance_id",)
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    def __init__(self, instance_id: _Optional[str] = ...) -> None: ...

class GetInstanceStatusResponse(_message.Message):
    __slots__ = ("instance_id", "status", "checkpoint_id", "started_at_ms", "finished_at_ms", "output", "error")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    status: InstanceStatus
    checkpoint_id: str
    started_at_ms: int
    finished_at_ms: int
    output: bytes
    error: str
    def __init__(self, instance_id: _Optional[str] = ..., status: _Optional[_Union[InstanceStatus, str]] = ..., checkpoint_id: _Optional[str] = ..., started_at_ms: _Optional[int] = ..., finished_at_ms: _Optional[int] = ..., output: _Optional[bytes] = ..., error: _Optional[str] = ...) -> None: ...
