from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

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

class ScheduleAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCHEDULE_ACTION_UNSPECIFIED: _ClassVar[ScheduleAction]
    SCHEDULE_PAUSE: _ClassVar[ScheduleAction]
    SCHEDULE_RESUME: _ClassVar[ScheduleAction]
    SCHEDULE_REMOVE: _ClassVar[ScheduleAction]
    SCHEDULE_TRIGGER: _ClassVar[ScheduleAction]
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
SCHEDULE_ACTION_UNSPECIFIED: ScheduleAction
SCHEDULE_PAUSE: ScheduleAction
SCHEDULE_RESUME: ScheduleAction
SCHEDULE_REMOVE: ScheduleAction
SCHEDULE_TRIGGER: ScheduleAction

class RpcRequest(_message.Message):
    __slots__ = ("health_check", "send_signal", "get_instance_status", "list_instances", "list_checkpoints", "get_checkpoint", "send_custom_signal", "get_instance", "list_events", "get_stats", "start_instance", "stop_instance", "read_log", "retry_instance", "set_queue", "list_queues", "add_schedule", "list_schedules", "change_schedule", "fork_instance", "start_child", "get_child", "token")
    HEALTH_CHECK_FIELD_NUMBER: _ClassVar[int]
    SEND_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    GET_INSTANCE_STATUS_FIELD_NUMBER: _ClassVar[int]
    LIST_INSTANCES_FIELD_NUMBER: _ClassVar[int]
    LIST_CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    GET_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    SEND_CUSTOM_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    GET_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    LIST_EVENTS_FIELD_NUMBER: _ClassVar[int]
    GET_STATS_FIELD_NUMBER: _ClassVar[int]
    START_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    STOP_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    READ_LOG_FIELD_NUMBER: _ClassVar[int]
    RETRY_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    SET_QUEUE_FIELD_NUMBER: _ClassVar[int]
    LIST_QUEUES_FIELD_NUMBER: _ClassVar[int]
    ADD_SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    LIST_SCHEDULES_FIELD_NUMBER: _ClassVar[int]
    CHANGE_SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    FORK_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    START_CHILD_FIELD_NUMBER: _ClassVar[int]
    GET_CHILD_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    health_check: HealthCheckRequest
    send_signal: SendSignalRequest
    get_instance_status: GetInstanceStatusRequest
    list_instances: ListInstancesRequest
    list_checkpoints: ListCheckpointsRequest
    get_checkpoint: GetCheckpointRequest
    send_custom_signal: SendCustomSignalRequest
    get_instance: GetInstanceRequest
    list_events: ListEventsRequest
    get_stats: GetStatsRequest
    start_instance: StartInstanceRequest
    stop_instance: StopInstanceRequest
    read_log: ReadLogRequest
    retry_instance: RetryInstanceRequest
    set_queue: SetQueueRequest
    list_queues: ListQueuesRequest
    add_schedule: AddScheduleRequest
    list_schedules: ListSchedulesRequest
    change_schedule: ChangeScheduleRequest
    fork_instance: ForkInstanceRequest
    start_child: StartChildRequest
    get_child: GetChildRequest
    token: str
    def __init__(self, health_check: _Optional[_Union[HealthCheckRequest, _Mapping]] = ..., send_signal: _Optional[_Union[SendSignalRequest, _Mapping]] = ..., get_instance_status: _Optional[_Union[GetInstanceStatusRequest, _Mapping]] = ..., list_instances: _Optional[_Union[ListInstancesRequest, _Mapping]] = ..., list_checkpoints: _Optional[_Union[ListCheckpointsRequest, _Mapping]] = ..., get_checkpoint: _Optional[_Union[GetCheckpointRequest, _Mapping]] = ..., send_custom_signal: _Optional[_Union[SendCustomSignalRequest, _Mapping]] = ..., get_instance: _Optional[_Union[GetInstanceRequest, _Mapping]] = ..., list_events: _Optional[_Union[ListEventsRequest, _Mapping]] = ..., get_stats: _Optional[_Union[GetStatsRequest, _Mapping]] = ..., start_instance: _Optional[_Union[StartInstanceRequest, _Mapping]] = ..., stop_instance: _Optional[_Union[StopInstanceRequest, _Mapping]] = ..., read_log: _Optional[_Union[ReadLogRequest, _Mapping]] = ..., retry_instance: _Optional[_Union[RetryInstanceRequest, _Mapping]] = ..., set_queue: _Optional[_Union[SetQueueRequest, _Mapping]] = ..., list_queues: _Optional[_Union[ListQueuesRequest, _Mapping]] = ..., add_schedule: _Optional[_Union[AddScheduleRequest, _Mapping]] = ..., list_schedules: _Optional[_Union[ListSchedulesRequest, _Mapping]] = ..., change_schedule: _Optional[_Union[ChangeScheduleRequest, _Mapping]] = ..., fork_instance: _Optional[_Union[ForkInstanceRequest, _Mapping]] = ..., start_child: _Optional[_Union[StartChildRequest, _Mapping]] = ..., get_child: _Optional[_Union[GetChildRequest, _Mapping]] = ..., token: _Optional[str] = ...) -> None: ...

class RpcResponse(_message.Message):
    __slots__ = ("health_check", "send_signal", "get_instance_status", "list_instances", "list_checkpoints", "get_checkpoint", "send_custom_signal", "error", "get_instance", "list_events", "get_stats", "start_instance", "stop_instance", "read_log", "retry_instance", "set_queue", "list_queues", "add_schedule", "list_schedules", "change_schedule", "fork_instance", "start_child", "get_child")
    HEALTH_CHECK_FIELD_NUMBER: _ClassVar[int]
    SEND_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    GET_INSTANCE_STATUS_FIELD_NUMBER: _ClassVar[int]
    LIST_INSTANCES_FIELD_NUMBER: _ClassVar[int]
    LIST_CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    GET_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    SEND_CUSTOM_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    GET_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    LIST_EVENTS_FIELD_NUMBER: _ClassVar[int]
    GET_STATS_FIELD_NUMBER: _ClassVar[int]
    START_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    STOP_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    READ_LOG_FIELD_NUMBER: _ClassVar[int]
    RETRY_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    SET_QUEUE_FIELD_NUMBER: _ClassVar[int]
    LIST_QUEUES_FIELD_NUMBER: _ClassVar[int]
    ADD_SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    LIST_SCHEDULES_FIELD_NUMBER: _ClassVar[int]
    CHANGE_SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    FORK_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    START_CHILD_FIELD_NUMBER: _ClassVar[int]
    GET_CHILD_FIELD_NUMBER: _ClassVar[int]
    health_check: HealthCheckResponse
    send_signal: SendSignalResponse
    get_instance_status: GetInstanceStatusResponse
    list_instances: ListInstancesResponse
    list_checkpoints: ListCheckpointsResponse
    get_checkpoint: GetCheckpointResponse
    send_custom_signal: SendCustomSignalResponse
    error: RpcError
    get_instance: GetInstanceResponse
    list_events: ListEventsResponse
    get_stats: GetStatsResponse
    start_instance: StartInstanceResponse
    stop_instance: StopInstanceResponse
    read_log: ReadLogResponse
    retry_instance: RetryInstanceResponse
    set_queue: SetQueueResponse
    list_queues: ListQueuesResponse
    add_schedule: AddScheduleResponse
    list_schedules: ListSchedulesResponse
    change_schedule: ChangeScheduleResponse
    fork_instance: ForkInstanceResponse
    start_child: StartChildResponse
    get_child: GetChildResponse
    def __init__(self, health_check: _Optional[_Union[HealthCheckResponse, _Mapping]] = ..., send_signal: _Optional[_Union[SendSignalResponse, _Mapping]] = ..., get_instance_status: _Optional[_Union[GetInstanceStatusResponse, _Mapping]] = ..., list_instances: _Optional[_Union[ListInstancesResponse, _Mapping]] = ..., list_checkpoints: _Optional[_Union[ListCheckpointsResponse, _Mapping]] = ..., get_checkpoint: _Optional[_Union[GetCheckpointResponse, _Mapping]] = ..., send_custom_signal: _Optional[_Union[SendCustomSignalResponse, _Mapping]] = ..., error: _Optional[_Union[RpcError, _Mapping]] = ..., get_instance: _Optional[_Union[GetInstanceResponse, _Mapping]] = ..., list_events: _Optional[_Union[ListEventsResponse, _Mapping]] = ..., get_stats: _Optional[_Union[GetStatsResponse, _Mapping]] = ..., start_instance: _Optional[_Union[StartInstanceResponse, _Mapping]] = ..., stop_instance: _Optional[_Union[StopInstanceResponse, _Mapping]] = ..., read_log: _Optional[_Union[ReadLogResponse, _Mapping]] = ..., retry_instance: _Optional[_Union[RetryInstanceResponse, _Mapping]] = ..., set_queue: _Optional[_Union[SetQueueResponse, _Mapping]] = ..., list_queues: _Optional[_Union[ListQueuesResponse, _Mapping]] = ..., add_schedule: _Optional[_Union[AddScheduleResponse, _Mapping]] = ..., list_schedules: _Optional[_Union[ListSchedulesResponse, _Mapping]] = ..., change_schedule: _Optional[_Union[ChangeScheduleResponse, _Mapping]] = ..., fork_instance: _Optional[_Union[ForkInstanceResponse, _Mapping]] = ..., start_child: _Optional[_Union[StartChildResponse, _Mapping]] = ..., get_child: _Optional[_Union[GetChildResponse, _Mapping]] = ...) -> None: ...

class RpcError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class HealthCheckRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthCheckResponse(_message.Message):
    __slots__ = ("healthy", "version", "uptime_ms", "active_instances", "error")
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPTIME_MS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_INSTANCES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    healthy: bool
    version: str
    uptime_ms: int
    active_instances: int
    error: str
    def __init__(self, healthy: _Optional[bool] = ..., version: _Optional[str] = ..., uptime_ms: _Optional[int] = ..., active_instances: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class SendSignalRequest(_message.Message):
    __slots__ = ("instance_id", "signal_type", "payload")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_TYPE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    signal_type: SignalType
    payload: bytes
    def __init__(self, instance_id: _Optional[str] = ..., signal_type: _Optional[_Union[SignalType, str]] = ..., payload: _Optional[bytes] = ...) -> None: ...

class SendSignalResponse(_message.Message):
    __slots__ = ("success", "error")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    success: bool
    error: str
    def __init__(self, success: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class SendCustomSignalRequest(_message.Message):
    __slots__ = ("instance_id", "checkpoint_id", "payload")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    checkpoint_id: str
    payload: bytes
    def __init__(self, instance_id: _Optional[str] = ..., checkpoint_id: _Optional[str] = ..., payload: _Optional[bytes] = ...) -> None: ...

class SendCustomSignalResponse(_message.Message):
    __slots__ = ("success", "error")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    success: bool
    error: str
    def __init__(self, success: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

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

class ListInstancesRequest(_message.Message):
    __slots__ = ("tenant_id", "status", "limit", "offset", "after", "count_at_most", "before")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    COUNT_AT_MOST_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    status: InstanceStatus
    limit: int
    offset: int
    after: str
    count_at_most: int
    before: str
    def __init__(self, tenant_id: _Optional[str] = ..., status: _Optional[_Union[InstanceStatus, str]] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ..., after: _Optional[str] = ..., count_at_most: _Optional[int] = ..., before: _Optional[str] = ...) -> None: ...

class ListInstancesResponse(_message.Message):
    __slots__ = ("instances", "total_count", "next_cursor", "previous_cursor")
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_CURSOR_FIELD_NUMBER: _ClassVar[int]
    instances: _containers.RepeatedCompositeFieldContainer[InstanceSummary]
    total_count: int
    next_cursor: str
    previous_cursor: str
    def __init__(self, instances: _Optional[_Iterable[_Union[InstanceSummary, _Mapping]]] = ..., total_count: _Optional[int] = ..., next_cursor: _Optional[str] = ..., previous_cursor: _Optional[str] = ...) -> None: ...

class InstanceSummary(_message.Message):
    __slots__ = ("instance_id", "tenant_id", "status", "created_at_ms", "started_at_ms", "finished_at_ms", "checkpoint_id", "last_activity_at_ms", "sleep_until_ms", "output", "error")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTIVITY_AT_MS_FIELD_NUMBER: _ClassVar[int]
    SLEEP_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    tenant_id: str
    status: InstanceStatus
    created_at_ms: int
    started_at_ms: int
    finished_at_ms: int
    checkpoint_id: str
    last_activity_at_ms: int
    sleep_until_ms: int
    output: bytes
    error: str
    def __init__(self, instance_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., status: _Optional[_Union[InstanceStatus, str]] = ..., created_at_ms: _Optional[int] = ..., started_at_ms: _Optional[int] = ..., finished_at_ms: _Optional[int] = ..., checkpoint_id: _Optional[str] = ..., last_activity_at_ms: _Optional[int] = ..., sleep_until_ms: _Optional[int] = ..., output: _Optional[bytes] = ..., error: _Optional[str] = ...) -> None: ...

class ListCheckpointsRequest(_message.Message):
    __slots__ = ("instance_id", "checkpoint_id", "limit", "offset", "created_after_ms", "created_before_ms")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    CREATED_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    CREATED_BEFORE_MS_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    checkpoint_id: str
    limit: int
    offset: int
    created_after_ms: int
    created_before_ms: int
    def __init__(self, instance_id: _Optional[str] = ..., checkpoint_id: _Optional[str] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ..., created_after_ms: _Optional[int] = ..., created_before_ms: _Optional[int] = ...) -> None: ...

class ListCheckpointsResponse(_message.Message):
    __slots__ = ("checkpoints", "total_count", "limit", "offset")
    CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    checkpoints: _containers.RepeatedCompositeFieldContainer[CheckpointSummary]
    total_count: int
    limit: int
    offset: int
    def __init__(self, checkpoints: _Optional[_Iterable[_Union[CheckpointSummary, _Mapping]]] = ..., total_count: _Optional[int] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class CheckpointSummary(_message.Message):
    __slots__ = ("checkpoint_id", "instance_id", "created_at_ms", "data_size_bytes")
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    DATA_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    checkpoint_id: str
    instance_id: str
    created_at_ms: int
    data_size_bytes: int
    def __init__(self, checkpoint_id: _Optional[str] = ..., instance_id: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., data_size_bytes: _Optional[int] = ...) -> None: ...

class GetCheckpointRequest(_message.Message):
    __slots__ = ("instance_id", "checkpoint_id")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    checkpoint_id: str
    def __init__(self, instance_id: _Optional[str] = ..., checkpoint_id: _Optional[str] = ...) -> None: ...

class GetCheckpointResponse(_message.Message):
    __slots__ = ("found", "checkpoint_id", "instance_id", "created_at_ms", "data")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    found: bool
    checkpoint_id: str
    instance_id: str
    created_at_ms: int
    data: bytes
    def __init__(self, found: _Optional[bool] = ..., checkpoint_id: _Optional[str] = ..., instance_id: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class GetInstanceRequest(_message.Message):
    __slots__ = ("instance_id", "recent_events")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    RECENT_EVENTS_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    recent_events: int
    def __init__(self, instance_id: _Optional[str] = ..., recent_events: _Optional[int] = ...) -> None: ...

class PendingSignal(_message.Message):
    __slots__ = ("signal_type", "payload", "created_at_ms")
    SIGNAL_TYPE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    signal_type: SignalType
    payload: bytes
    created_at_ms: int
    def __init__(self, signal_type: _Optional[_Union[SignalType, str]] = ..., payload: _Optional[bytes] = ..., created_at_ms: _Optional[int] = ...) -> None: ...

class PendingCustomSignal(_message.Message):
    __slots__ = ("checkpoint_id", "payload", "created_at_ms")
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    checkpoint_id: str
    payload: bytes
    created_at_ms: int
    def __init__(self, checkpoint_id: _Optional[str] = ..., payload: _Optional[bytes] = ..., created_at_ms: _Optional[int] = ...) -> None: ...

class GetInstanceResponse(_message.Message):
    __slots__ = ("found", "instance", "pending_signal", "custom_signals", "recent_events", "launch", "wait_reason", "children")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    PENDING_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_SIGNALS_FIELD_NUMBER: _ClassVar[int]
    RECENT_EVENTS_FIELD_NUMBER: _ClassVar[int]
    LAUNCH_FIELD_NUMBER: _ClassVar[int]
    WAIT_REASON_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    found: bool
    instance: InstanceSummary
    pending_signal: PendingSignal
    custom_signals: _containers.RepeatedCompositeFieldContainer[PendingCustomSignal]
    recent_events: _containers.RepeatedCompositeFieldContainer[Event]
    launch: Launch
    wait_reason: str
    children: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, found: _Optional[bool] = ..., instance: _Optional[_Union[InstanceSummary, _Mapping]] = ..., pending_signal: _Optional[_Union[PendingSignal, _Mapping]] = ..., custom_signals: _Optional[_Iterable[_Union[PendingCustomSignal, _Mapping]]] = ..., recent_events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., launch: _Optional[_Union[Launch, _Mapping]] = ..., wait_reason: _Optional[str] = ..., children: _Optional[_Iterable[str]] = ...) -> None: ...

class Launch(_message.Message):
    __slots__ = ("spec", "max_failures", "attempt", "failures", "next_launch_at_ms", "claimed_by", "claimed_until_ms", "pid", "host", "stop_deadline_ms", "last_exit", "launched_at_ms", "resumed_from", "queue", "key", "priority", "origin_instance", "origin_checkpoint", "parent_instance", "on_parent_cancel")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    MAX_FAILURES_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    NEXT_LAUNCH_AT_MS_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_BY_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    STOP_DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_EXIT_FIELD_NUMBER: _ClassVar[int]
    LAUNCHED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FROM_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    PARENT_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    ON_PARENT_CANCEL_FIELD_NUMBER: _ClassVar[int]
    spec: str
    max_failures: int
    attempt: int
    failures: int
    next_launch_at_ms: int
    claimed_by: str
    claimed_until_ms: int
    pid: int
    host: str
    stop_deadline_ms: int
    last_exit: str
    launched_at_ms: int
    resumed_from: str
    queue: str
    key: str
    priority: int
    origin_instance: str
    origin_checkpoint: str
    parent_instance: str
    on_parent_cancel: str
    def __init__(self, spec: _Optional[str] = ..., max_failures: _Optional[int] = ..., attempt: _Optional[int] = ..., failures: _Optional[int] = ..., next_launch_at_ms: _Optional[int] = ..., claimed_by: _Optional[str] = ..., claimed_until_ms: _Optional[int] = ..., pid: _Optional[int] = ..., host: _Optional[str] = ..., stop_deadline_ms: _Optional[int] = ..., last_exit: _Optional[str] = ..., launched_at_ms: _Optional[int] = ..., resumed_from: _Optional[str] = ..., queue: _Optional[str] = ..., key: _Optional[str] = ..., priority: _Optional[int] = ..., origin_instance: _Optional[str] = ..., origin_checkpoint: _Optional[str] = ..., parent_instance: _Optional[str] = ..., on_parent_cancel: _Optional[str] = ...) -> None: ...

class ListEventsRequest(_message.Message):
    __slots__ = ("instance_id", "event_type", "subtype", "created_after_ms", "created_before_ms", "payload_contains", "limit", "offset")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SUBTYPE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    CREATED_BEFORE_MS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_CONTAINS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    event_type: str
    subtype: str
    created_after_ms: int
    created_before_ms: int
    payload_contains: str
    limit: int
    offset: int
    def __init__(self, instance_id: _Optional[str] = ..., event_type: _Optional[str] = ..., subtype: _Optional[str] = ..., created_after_ms: _Optional[int] = ..., created_before_ms: _Optional[int] = ..., payload_contains: _Optional[str] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("id", "event_type", "checkpoint_id", "payload", "subtype", "created_at_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SUBTYPE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    id: int
    event_type: str
    checkpoint_id: str
    payload: bytes
    subtype: str
    created_at_ms: int
    def __init__(self, id: _Optional[int] = ..., event_type: _Optional[str] = ..., checkpoint_id: _Optional[str] = ..., payload: _Optional[bytes] = ..., subtype: _Optional[str] = ..., created_at_ms: _Optional[int] = ...) -> None: ...

class ListEventsResponse(_message.Message):
    __slots__ = ("events", "total_count")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    total_count: int
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., total_count: _Optional[int] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("counters",)
    class CountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    counters: _containers.ScalarMap[str, float]
    def __init__(self, counters: _Optional[_Mapping[str, float]] = ...) -> None: ...

class StartInstanceRequest(_message.Message):
    __slots__ = ("instance_id", "tenant_id", "spec", "input", "replace", "not_before_ms", "delay_ms")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_MS_FIELD_NUMBER: _ClassVar[int]
    DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    tenant_id: str
    spec: str
    input: bytes
    replace: bool
    not_before_ms: int
    delay_ms: int
    def __init__(self, instance_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., spec: _Optional[str] = ..., input: _Optional[bytes] = ..., replace: _Optional[bool] = ..., not_before_ms: _Optional[int] = ..., delay_ms: _Optional[int] = ...) -> None: ...

class StartInstanceResponse(_message.Message):
    __slots__ = ("success", "error", "deduplicated")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DEDUPLICATED_FIELD_NUMBER: _ClassVar[int]
    success: bool
    error: str
    deduplicated: bool
    def __init__(self, success: _Optional[bool] = ..., error: _Optional[str] = ..., deduplicated: _Optional[bool] = ...) -> None: ...

class StopInstanceRequest(_message.Message):
    __slots__ = ("instance_id", "grace_ms", "give_up", "reason")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    GRACE_MS_FIELD_NUMBER: _ClassVar[int]
    GIVE_UP_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    grace_ms: int
    give_up: bool
    reason: str
    def __init__(self, instance_id: _Optional[str] = ..., grace_ms: _Optional[int] = ..., give_up: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class StopInstanceResponse(_message.Message):
    __slots__ = ("success", "error", "launched")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LAUNCHED_FIELD_NUMBER: _ClassVar[int]
    success: bool
    error: str
    launched: bool
    def __init__(self, success: _Optional[bool] = ..., error: _Optional[str] = ..., launched: _Optional[bool] = ...) -> None: ...

class ReadLogRequest(_message.Message):
    __slots__ = ("instance_id", "stream", "offset")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    stream: str
    offset: int
    def __init__(self, instance_id: _Optional[str] = ..., stream: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class ReadLogResponse(_message.Message):
    __slots__ = ("data", "next_offset")
    DATA_FIELD_NUMBER: _ClassVar[int]
    NEXT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    next_offset: int
    def __init__(self, data: _Optional[bytes] = ..., next_offset: _Optional[int] = ...) -> None: ...

class RetryInstanceRequest(_message.Message):
    __slots__ = ("instance_id", "env", "input")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    env: _containers.RepeatedScalarFieldContainer[str]
    input: bytes
    def __init__(self, instance_id: _Optional[str] = ..., env: _Optional[_Iterable[str]] = ..., input: _Optional[bytes] = ...) -> None: ...

class RetryInstanceResponse(_message.Message):
    __slots__ = ("success", "error", "checkpoint_id")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    success: bool
    error: str
    checkpoint_id: str
    def __init__(self, success: _Optional[bool] = ..., error: _Optional[str] = ..., checkpoint_id: _Optional[str] = ...) -> None: ...

class ForkInstanceRequest(_message.Message):
    __slots__ = ("instance_id", "checkpoint_id", "new_id", "env", "input")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    NEW_ID_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    checkpoint_id: str
    new_id: str
    env: _containers.RepeatedScalarFieldContainer[str]
    input: bytes
    def __init__(self, instance_id: _Optional[str] = ..., checkpoint_id: _Optional[str] = ..., new_id: _Optional[str] = ..., env: _Optional[_Iterable[str]] = ..., input: _Optional[bytes] = ...) -> None: ...

class ForkInstanceResponse(_message.Message):
    __slots__ = ("success", "error", "instance_id", "checkpoint_id")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    success: bool
    error: str
    instance_id: str
    checkpoint_id: str
    def __init__(self, success: _Optional[bool] = ..., error: _Optional[str] = ..., instance_id: _Optional[str] = ..., checkpoint_id: _Optional[str] = ...) -> None: ...

class Queue(_message.Message):
    __slots__ = ("name", "concurrency", "per_key", "rate_limit", "rate_period_seconds", "paused")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    PER_KEY_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    RATE_PERIOD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    name: str
    concurrency: int
    per_key: int
    rate_limit: int
    rate_period_seconds: float
    paused: bool
    def __init__(self, name: _Optional[str] = ..., concurrency: _Optional[int] = ..., per_key: _Optional[int] = ..., rate_limit: _Optional[int] = ..., rate_period_seconds: _Optional[float] = ..., paused: _Optional[bool] = ...) -> None: ...

class QueueFigures(_message.Message):
    __slots__ = ("running", "due", "later")
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    DUE_FIELD_NUMBER: _ClassVar[int]
    LATER_FIELD_NUMBER: _ClassVar[int]
    running: int
    due: int
    later: int
    def __init__(self, running: _Optional[int] = ..., due: _Optional[int] = ..., later: _Optional[int] = ...) -> None: ...

class QueueView(_message.Message):
    __slots__ = ("queue", "figures")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    FIGURES_FIELD_NUMBER: _ClassVar[int]
    queue: Queue
    figures: QueueFigures
    def __init__(self, queue: _Optional[_Union[Queue, _Mapping]] = ..., figures: _Optional[_Union[QueueFigures, _Mapping]] = ...) -> None: ...

class SetQueueRequest(_message.Message):
    __slots__ = ("name", "concurrency", "per_key", "rate_limit", "rate_period_seconds", "paused", "clear")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    PER_KEY_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    RATE_PERIOD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    CLEAR_FIELD_NUMBER: _ClassVar[int]
    name: str
    concurrency: int
    per_key: int
    rate_limit: int
    rate_period_seconds: float
    paused: bool
    clear: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., concurrency: _Optional[int] = ..., per_key: _Optional[int] = ..., rate_limit: _Optional[int] = ..., rate_period_seconds: _Optional[float] = ..., paused: _Optional[bool] = ..., clear: _Optional[_Iterable[str]] = ...) -> None: ...

class SetQueueResponse(_message.Message):
    __slots__ = ("success", "error", "queue")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    success: bool
    error: str
    queue: Queue
    def __init__(self, success: _Optional[bool] = ..., error: _Optional[str] = ..., queue: _Optional[_Union[Queue, _Mapping]] = ...) -> None: ...

class ListQueuesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListQueuesResponse(_message.Message):
    __slots__ = ("queues",)
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    queues: _containers.RepeatedCompositeFieldContainer[QueueView]
    def __init__(self, queues: _Optional[_Iterable[_Union[QueueView, _Mapping]]] = ...) -> None: ...

class Schedule(_message.Message):
    __slots__ = ("name", "cron", "every_seconds", "timezone", "overlap", "catch_up", "tenant_id", "spec", "input", "created_at_ms", "next_tick_at_ms", "paused", "last_tick_at_ms", "last_instance_id", "ticks", "skipped")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    EVERY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    CATCH_UP_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    NEXT_TICK_AT_MS_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    LAST_TICK_AT_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    TICKS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    name: str
    cron: str
    every_seconds: float
    timezone: str
    overlap: str
    catch_up: str
    tenant_id: str
    spec: str
    input: bytes
    created_at_ms: int
    next_tick_at_ms: int
    paused: bool
    last_tick_at_ms: int
    last_instance_id: str
    ticks: int
    skipped: int
    def __init__(self, name: _Optional[str] = ..., cron: _Optional[str] = ..., every_seconds: _Optional[float] = ..., timezone: _Optional[str] = ..., overlap: _Optional[str] = ..., catch_up: _Optional[str] = ..., tenant_id: _Optional[str] = ..., spec: _Optional[str] = ..., input: _Optional[bytes] = ..., created_at_ms: _Optional[int] = ..., next_tick_at_ms: _Optional[int] = ..., paused: _Optional[bool] = ..., last_tick_at_ms: _Optional[int] = ..., last_instance_id: _Optional[str] = ..., ticks: _Optional[int] = ..., skipped: _Optional[int] = ...) -> None: ...

class AddScheduleRequest(_message.Message):
    __slots__ = ("name", "cron", "every_seconds", "timezone", "overlap", "catch_up", "tenant_id", "spec", "input", "replace")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    EVERY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    CATCH_UP_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    name: str
    cron: str
    every_seconds: float
    timezone: str
    overlap: str
    catch_up: str
    tenant_id: str
    spec: str
    input: bytes
    replace: bool
    def __init__(self, name: _Optional[str] = ..., cron: _Optional[str] = ..., every_seconds: _Optional[float] = ..., timezone: _Optional[str] = ..., overlap: _Optional[str] = ..., catch_up: _Optional[str] = ..., tenant_id: _Optional[str] = ..., spec: _Optional[str] = ..., input: _Optional[bytes] = ..., replace: _Optional[bool] = ...) -> None: ...

class AddScheduleResponse(_message.Message):
    __slots__ = ("success", "error", "schedule")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    success: bool
    error: str
    schedule: Schedule
    def __init__(self, success: _Optional[bool] = ..., error: _Optional[str] = ..., schedule: _Optional[_Union[Schedule, _Mapping]] = ...) -> None: ...

class ListSchedulesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSchedulesResponse(_message.Message):
    __slots__ = ("schedules",)
    SCHEDULES_FIELD_NUMBER: _ClassVar[int]
    schedules: _containers.RepeatedCompositeFieldContainer[Schedule]
    def __init__(self, schedules: _Optional[_Iterable[_Union[Schedule, _Mapping]]] = ...) -> None: ...

class ChangeScheduleRequest(_message.Message):
    __slots__ = ("name", "action")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    action: ScheduleAction
    def __init__(self, name: _Optional[str] = ..., action: _Optional[_Union[ScheduleAction, str]] = ...) -> None: ...

class ChangeScheduleResponse(_message.Message):
    __slots__ = ("success", "error", "schedule", "instance_id")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    success: bool
    error: str
    schedule: Schedule
    instance_id: str
    def __init__(self, success: _Optional[bool] = ..., error: _Optional[str] = ..., schedule: _Optional[_Union[Schedule, _Mapping]] = ..., instance_id: _Optional[str] = ...) -> None: ...

class StartChildRequest(_message.Message):
    __slots__ = ("parent_id", "child_id", "command", "env", "input", "on_parent_cancel")
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    CHILD_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    ON_PARENT_CANCEL_FIELD_NUMBER: _ClassVar[int]
    parent_id: str
    child_id: str
    command: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.RepeatedScalarFieldContainer[str]
    input: bytes
    on_parent_cancel: str
    def __init__(self, parent_id: _Optional[str] = ..., child_id: _Optional[str] = ..., command: _Optional[_Iterable[str]] = ..., env: _Optional[_Iterable[str]] = ..., input: _Optional[bytes] = ..., on_parent_cancel: _Optional[str] = ...) -> None: ...

class StartChildResponse(_message.Message):
    __slots__ = ("success", "error", "deduplicated")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DEDUPLICATED_FIELD_NUMBER: _ClassVar[int]
    success: bool
    error: str
    deduplicated: bool
    def __init__(self, success: _Optional[bool] = ..., error: _Optional[str] = ..., deduplicated: _Optional[bool] = ...) -> None: ...

class GetChildRequest(_message.Message):
    __slots__ = ("parent_id", "child_id")
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    CHILD_ID_FIELD_NUMBER: _ClassVar[int]
    parent_id: str
    child_id: str
    def __init__(self, parent_id: _Optional[str] = ..., child_id: _Optional[str] = ...) -> None: ...

class GetChildResponse(_message.Message):
    __slots__ = ("found", "status", "output", "error")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    found: bool
    status: InstanceStatus
    output: bytes
    error: str
    def __init__(self, found: _Optional[bool] = ..., status: _Optional[_Union[InstanceStatus, str]] = ..., output: _Optional[bytes] = ..., error: _Optional[str] = ...) -> None: ...
