"""The generated module matches upstream's field tables."""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import FieldDescriptor as F

from runtara.protocol import instance_pb2 as pb

S, B, BOOL, U64, U32, I64, E, M = (
    F.TYPE_STRING,
    F.TYPE_BYTES,
    F.TYPE_BOOL,
    F.TYPE_UINT64,
    F.TYPE_UINT32,
    F.TYPE_INT64,
    F.TYPE_ENUM,
    F.TYPE_MESSAGE,
)
OPT, REP = "optional", "repeated"

FIELDS = {
    "RegisterInstanceRequest": [
        ("instance_id", 1, S),
        ("tenant_id", 2, S),
        ("checkpoint_id", 3, S, OPT),
    ],
    "RegisterInstanceResponse": [("success", 1, BOOL), ("error", 2, S)],
    "CheckpointRequest": [("instance_id", 1, S), ("checkpoint_id", 2, S), ("state", 3, B)],
    "CheckpointResponse": [
        ("found", 1, BOOL),
        ("state", 2, B),
        ("pending_signal", 3, M, OPT),
        ("custom_signal", 4, M, OPT),
    ],
    "GetCheckpointRequest": [("instance_id", 1, S), ("checkpoint_id", 2, S)],
    "GetCheckpointResponse": [("found", 1, BOOL), ("state", 2, B)],
    "SleepRequest": [
        ("instance_id", 1, S),
        ("duration_ms", 2, U64),
        ("checkpoint_id", 3, S),
        ("state", 4, B),
    ],
    "SleepResponse": [],
    "InstanceEvent": [
        ("instance_id", 1, S),
        ("event_type", 2, E),
        ("checkpoint_id", 3, S, OPT),
        ("payload", 4, B),
        ("timestamp_ms", 5, I64),
        ("subtype", 6, S, OPT),
    ],
    "InstanceEventResponse": [("success", 1, BOOL), ("error", 2, S, OPT)],
    "InstanceEventBatch": [("events", 1, M, REP)],
    "RetryAttemptEvent": [
        ("instance_id", 1, S),
        ("checkpoint_id", 2, S),
        ("attempt_number", 3, U32),
        ("timestamp_ms", 4, I64),
        ("error_message", 5, S, OPT),
    ],
    "Signal": [("instance_id", 1, S), ("signal_type", 2, E), ("payload", 3, B)],
    "CustomSignal": [("checkpoint_id", 1, S), ("payload", 2, B)],
    "SignalAck": [("instance_id", 1, S), ("signal_type", 2, E), ("acknowledged", 3, BOOL)],
    "PollSignalsRequest": [("instance_id", 1, S), ("checkpoint_id", 2, S, OPT)],
    "PollSignalsResponse": [("signal", 1, M, OPT), ("custom_signal", 2, M, OPT)],
    "GetInstanceStatusRequest": [("instance_id", 1, S)],
    "GetInstanceStatusResponse": [
        ("instance_id", 1, S),
        ("status", 2, E),
        ("checkpoint_id", 3, S, OPT),
        ("started_at_ms", 4, I64),
        ("finished_at_ms", 5, I64, OPT),
        ("output", 6, B, OPT),
        ("error", 7, S, OPT),
    ],
    "RpcError": [("code", 1, S), ("message", 2, S)],
    "RpcRequest": [
        ("register_instance", 1, M),
        ("sleep", 4, M),
        ("instance_event", 5, M),
        ("instance_event_batch", 6, M),
        ("get_instance_status", 7, M),
        ("checkpoint", 8, M),
        ("get_checkpoint", 9, M),
        ("poll_signals", 10, M),
        ("signal_ack", 11, M),
        ("retry_attempt", 12, M),
    ],
    "RpcResponse": [
        ("register_instance", 1, M),
        ("sleep", 4, M),
        ("instance_event", 5, M),
        ("get_instance_status", 7, M),
        ("checkpoint", 8, M),
        ("get_checkpoint", 9, M),
        ("poll_signals", 10, M),
        ("error", 15, M),
    ],
}

OUR_ADDITIONS = {
    "RpcRequest": [("registration", 20, U64, OPT)],
    "RegisterInstanceResponse": [("registration", 20, U64, OPT)],
}
"""Fields of this project's own, numbered from 20 and optional, so that upstream
parsers skip them and upstream clients, which never send them, lose nothing."""

ENUMS = {
    "InstanceEventType": {
        "EVENT_HEARTBEAT": 0,
        "EVENT_COMPLETED": 2,
        "EVENT_FAILED": 3,
        "EVENT_SUSPENDED": 4,
        "EVENT_CUSTOM": 5,
    },
    "SignalType": {"SIGNAL_CANCEL": 0, "SIGNAL_PAUSE": 1, "SIGNAL_RESUME": 2},
    "InstanceStatus": {
        "STATUS_UNKNOWN": 0,
        "STATUS_PENDING": 1,
        "STATUS_RUNNING": 2,
        "STATUS_SUSPENDED": 3,
        "STATUS_COMPLETED": 4,
        "STATUS_FAILED": 5,
        "STATUS_CANCELLED": 6,
    },
}


def test_package_name():
    assert pb.DESCRIPTOR.package == "runtara.instance"


def test_every_message_is_listed():
    assert set(pb.DESCRIPTOR.message_types_by_name) == set(FIELDS)


@pytest.mark.parametrize("message", sorted(FIELDS))
def test_fields_match_upstream(message):
    descriptor = pb.DESCRIPTOR.message_types_by_name[message]
    actual = []
    for field in descriptor.fields:
        oneof = field.containing_oneof
        if field.is_repeated:
            label = REP
        elif oneof is not None and not oneof.name.startswith("_"):
            label = None  # a member of the RpcRequest / RpcResponse oneof
        else:
            label = OPT if field.has_presence else None
        actual.append((field.name, field.number, field.type, label))
    expected = []
    for name, number, kind, *label in FIELDS[message] + OUR_ADDITIONS.get(message, []):
        expected.append((name, number, kind, label[0] if label else None))
    if message in ("RpcRequest", "RpcResponse"):
        upstream = [f for f in descriptor.fields if f.number < 20]
        assert {f.containing_oneof.name for f in upstream} == {message[3:].lower()}
    assert sorted(actual, key=lambda f: f[1]) == sorted(expected, key=lambda f: f[1])


@pytest.mark.parametrize("enum", sorted(ENUMS))
def test_enums_match_upstream(enum):
    values = pb.DESCRIPTOR.enum_types_by_name[enum].values_by_name
    assert {name: value.number for name, value in values.items()} == ENUMS[enum]


def test_empty_oneof_replies_are_still_encoded():
    # upstream (prost) always writes the chosen variant, even when empty
    assert pb.RpcResponse(sleep=pb.SleepResponse()).SerializeToString() == b"\x22\x00"
    assert pb.RpcResponse(poll_signals=pb.PollSignalsResponse()).SerializeToString() == b"\x52\x00"
    assert (
        pb.RpcResponse(get_checkpoint=pb.GetCheckpointResponse()).SerializeToString() == b"\x4a\x00"
    )


# the management messages we keep exactly as upstream has them
from runtara.protocol import management_pb2 as mpb  # noqa: E402

UPSTREAM_MANAGEMENT = {
    "HealthCheckResponse": [
        ("healthy", 1, BOOL),
        ("version", 2, S),
        ("uptime_ms", 3, I64),
        ("active_instances", 4, U32),
    ],
    "SendSignalRequest": [("instance_id", 1, S), ("signal_type", 2, E), ("payload", 3, B)],
    "SendSignalResponse": [("success", 1, BOOL), ("error", 2, S)],
    "SendCustomSignalRequest": [("instance_id", 1, S), ("checkpoint_id", 2, S), ("payload", 3, B)],
    "SendCustomSignalResponse": [("success", 1, BOOL), ("error", 2, S)],
    "GetInstanceStatusRequest": [("instance_id", 1, S)],
    "ListInstancesRequest": [
        ("tenant_id", 1, S),
        ("status", 2, E),
        ("limit", 3, U32),
        ("offset", 4, U32),
    ],
    "ListInstancesResponse": [("instances", 1, M), ("total_count", 2, U32)],
    "InstanceSummary": [
        ("instance_id", 1, S),
        ("tenant_id", 2, S),
        ("status", 3, E),
        ("created_at_ms", 4, I64),
    ],
    "ListCheckpointsRequest": [
        ("instance_id", 1, S),
        ("checkpoint_id", 2, S),
        ("limit", 3, U32),
        ("offset", 4, U32),
        ("created_after_ms", 5, I64),
        ("created_before_ms", 6, I64),
    ],
    "ListCheckpointsResponse": [
        ("checkpoints", 1, M),
        ("total_count", 2, U32),
        ("limit", 3, U32),
        ("offset", 4, U32),
    ],
    "CheckpointSummary": [
        ("checkpoint_id", 1, S),
        ("instance_id", 2, S),
        ("created_at_ms", 3, I64),
        ("data_size_bytes", 4, U64),
    ],
    "GetCheckpointRequest": [("instance_id", 1, S), ("checkpoint_id", 2, S)],
    "GetCheckpointResponse": [
        ("found", 1, BOOL),
        ("checkpoint_id", 2, S),
        ("instance_id", 3, S),
        ("created_at_ms", 4, I64),
        ("data", 5, B),
    ],
    "RpcError": [("code", 1, S), ("message", 2, S)],
}
UPSTREAM_MANAGEMENT_ONEOF = {
    "health_check": 1,
    "send_signal": 2,
    "get_instance_status": 3,
    "list_instances": 4,
    "list_checkpoints": 9,
    "get_checkpoint": 10,
    "send_custom_signal": 11,
}


@pytest.mark.parametrize("message", sorted(UPSTREAM_MANAGEMENT))
def test_upstream_management_fields_are_unchanged(message):
    fields = mpb.DESCRIPTOR.message_types_by_name[message].fields_by_name
    for name, number, kind in UPSTREAM_MANAGEMENT[message]:
        assert (fields[name].number, fields[name].type) == (number, kind), name
    # our additions never reuse upstream's numbers
    upstream_numbers = {number for _, number, _ in UPSTREAM_MANAGEMENT[message]}
    extra = [
        f for f in fields.values() if f.name not in {n for n, _, _ in UPSTREAM_MANAGEMENT[message]}
    ]
    assert all(f.number >= 10 for f in extra) and not upstream_numbers & {f.number for f in extra}


def test_upstream_management_oneofs_are_unchanged():
    for message in ("RpcRequest", "RpcResponse"):
        fields = mpb.DESCRIPTOR.message_types_by_name[message].fields_by_name
        for name, number in UPSTREAM_MANAGEMENT_ONEOF.items():
            assert fields[name].number == number
    assert mpb.DESCRIPTOR.message_types_by_name["RpcResponse"].fields_by_name["error"].number == 15
    assert mpb.DESCRIPTOR.package == "runtara.management"
