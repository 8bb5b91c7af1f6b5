"""PollSignals and SignalAck (README: Protocol behaviour).

An acknowledged signal is never delivered again. An acknowledgement only marks
the pending signal of the acknowledged type, so a signal that replaced it in
the meantime is not lost. A cancel acknowledgement makes a live instance
``cancelled`` with a finish time; a finished instance stays as it is.
"""

from __future__ import annotations

from runtara import records
from runtara.handlers import mapping
from runtara.handlers.checkpoints import require_instance
from runtara.handlers.services import Services
from runtara.protocol import instance_pb2 as pb
from runtara.storage import base


def poll_signals(request: pb.PollSignalsRequest, services: Services) -> pb.RpcResponse:
    instance_id = mapping.require_id(request)
    checkpoint_id = request.checkpoint_id if request.HasField("checkpoint_id") else None

    def work(tx: base.Transaction) -> pb.PollSignalsResponse:
        reply = pb.PollSignalsResponse()
        if tx.get_instance(instance_id) is None:
            return reply  # upstream answers an unknown instance with no signal
        tx.update_instance(instance_id, records.InstanceUpdate(last_activity_at=services.now()))
        signal = tx.get_pending_signal(instance_id)
        if signal is not None:
            reply.signal.CopyFrom(mapping.signal_message(signal))
        if checkpoint_id is not None:
            custom = tx.take_custom_signal(instance_id, checkpoint_id)
            if custom is not None:
                reply.custom_signal.CopyFrom(mapping.custom_signal_message(custom))
        return reply

    return pb.RpcResponse(poll_signals=services.storage.run(work))


def signal_ack(request: pb.SignalAck, services: Services) -> None:
    instance_id = mapping.require_id(request)
    kind = mapping.signal_type(request.signal_type)

    def work(tx: base.Transaction) -> None:
        now = services.now()
        instance = require_instance(tx, instance_id)
        update = records.InstanceUpdate(last_activity_at=now)
        if request.acknowledged:
            tx.acknowledge_signal(instance_id, kind, now)
            if kind is records.SignalType.CANCEL and not instance.status.is_terminal:
                update = records.InstanceUpdate(
                    status=records.InstanceStatus.CANCELLED,
                    finished_at=now,
                    sleep_until=None,
                    last_activity_at=now,
                )
        tx.update_instance(instance_id, update)

    services.storage.run(work)
