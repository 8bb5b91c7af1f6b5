"""Dispatch outcomes that need no network (the server tests cover the rest)."""

from __future__ import annotations

import datetime as dt

from runtara import records
from runtara.drivers.sqlite import SqliteDriver
from runtara.handlers import operations
from runtara.handlers.services import Services
from runtara.protocol import framing
from runtara.protocol import instance_pb2 as pb


def test_a_reply_too_large_for_a_frame_is_an_error_reply_not_silence(tmp_path):
    storage = SqliteDriver(f"sqlite:{tmp_path / 'db.sqlite'}")
    storage.migrate()
    now = dt.datetime.now(dt.timezone.utc)

    def setup(tx):
        tx.create_instance("big", "t", now)
        tx.update_instance("big", records.InstanceUpdate(status=records.InstanceStatus.RUNNING))
        tx.insert_checkpoint("big", "cp", bytes(framing.MAX_FRAME_SIZE - 1024), now)
        tx.put_custom_signal("big", "cp", bytes(1024 * 1024), now)

    storage.run(setup)
    outcome = operations.execute(
        operations.OPERATIONS["checkpoint"],
        pb.CheckpointRequest(instance_id="big", checkpoint_id="cp"),
        Services(storage),
    )
    (frame,) = framing.FrameDecoder().feed(outcome.frame)
    reply = pb.RpcResponse.FromString(frame.payload)
    assert reply.error.code == "CHECKPOINT_ERROR"
    assert reply.error.message.startswith("the reply would not fit in a frame")
    storage.close()
