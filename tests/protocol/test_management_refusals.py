"""Requests of the management protocol that mean nothing, refused with a reason."""

from __future__ import annotations

import pytest

from runtara import errors
from runtara.admin.local import LocalAdmin
from runtara.protocol import management_pb2 as mpb


@pytest.fixture
def operator(server):
    return server.client(server.management)


def manage(operator, **oneof) -> mpb.RpcResponse:
    return operator.request(mpb.RpcRequest(**oneof), mpb.RpcResponse)


def test_an_unknown_status_filter_is_an_error_not_an_empty_list(operator, running):
    listed = manage(operator, list_instances=mpb.ListInstancesRequest(status=99))
    assert listed.error.code == "LIST_INSTANCES_ERROR"
    assert "Unknown status: 99" in listed.error.message
    everything = manage(operator, list_instances=mpb.ListInstancesRequest()).list_instances
    assert [summary.instance_id for summary in everything.instances] == [running]


def test_an_unknown_log_stream_is_refused_by_the_server_and_locally(server, operator, running):
    read = manage(operator, read_log=mpb.ReadLogRequest(instance_id=running, stream="stdin"))
    assert read.error.code == "READ_LOG_ERROR" and "no log stream 'stdin'" in read.error.message
    with pytest.raises(errors.OperationRefused, match="no log stream 'stdin'"):
        LocalAdmin(server.storage, server.clock.now).read_log(running, "stdin", 0)


def test_a_queue_change_that_means_nothing_is_refused_in_band(operator):
    reply = manage(
        operator, set_queue=mpb.SetQueueRequest(name="q", concurrency=2, clear=["concurrency"])
    ).set_queue
    assert not reply.success and reply.error == "set_queue: concurrency is both set and cleared"
