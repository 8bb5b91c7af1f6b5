"""A request whose work is ended by something that is not an Exception (a
SystemExit, a KeyboardInterrupt, a library's own BaseException) still has its
stream answered and gives its worker back, on a real server over QUIC."""

from __future__ import annotations

import struct

import pytest

from runtara import errors
from runtara.handlers import dispatch
from runtara.protocol import instance_pb2 as pb
from runtara.protocol.codes import STREAM_FAILED
from tests.support import LoopbackServer, sqlite_url, wait_for


class Interrupted(BaseException):
    """Not an Exception: what escapes past ``except Exception``."""


def sleep_frame(instance_id: str) -> bytes:
    payload = pb.RpcRequest(sleep=pb.SleepRequest(instance_id=instance_id)).SerializeToString()
    return struct.pack(">IH", len(payload), 1) + payload


def test_a_base_exception_escaping_a_request_resets_its_stream_and_frees_its_worker(
    tmp_path, monkeypatch
):
    server = LoopbackServer(sqlite_url(tmp_path), max_concurrent=1)  # one slot: a leak shows
    try:
        client = server.client()
        assert client.register("sleeper").success

        def interrupted(started, services):
            raise Interrupted("the sleep's second half was interrupted")

        monkeypatch.setattr(dispatch, "finish_sleep", interrupted)

        async def sleep_briefly() -> int:
            stream = client.connection.open_stream()
            stream.send(sleep_frame("sleeper"), end=True)
            with pytest.raises(errors.ConnectionLost):
                await stream.read_frame()
            return stream.reset_code

        assert client.loop.run(sleep_briefly(), 10) == STREAM_FAILED
        monkeypatch.undo()
        wait_for(lambda: server.server.stats()["running"] == 0)
        assert client.register("after").success  # the only worker slot was given back
    finally:
        server.stop()
