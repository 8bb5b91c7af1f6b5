"""The ``echo`` baseline: runtara-core's own transport, answering without storage.

Every request goes through the same QUIC layer, dispatcher and worker pool as
in the real server; the handlers answer at once as a checkpoint of a new id
would (``found=false``), with no storage. Run as
``python -m runtara.bench.echo --port 0``; with ``--management-addr`` it also
serves the management protocol, whose ``GetStats`` counts the requests served.
Its stateless reset secret and connection journal go to a temporary runs
folder, removed when it stops, not to the working directory.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import tempfile
import threading
from pathlib import Path

from runtara import config, credentials
from runtara.handlers import dispatch
from runtara.protocol import instance_pb2 as pb
from runtara.server.app import InstanceServer
from runtara.server.core import Service

_CANNED = {
    "register_instance": pb.RpcResponse(
        register_instance=pb.RegisterInstanceResponse(success=True)
    ),
    "sleep": pb.RpcResponse(sleep=pb.SleepResponse()),
    "instance_event": pb.RpcResponse(instance_event=pb.InstanceEventResponse(success=True)),
    "get_instance_status": pb.RpcResponse(
        get_instance_status=pb.GetInstanceStatusResponse(status=pb.STATUS_RUNNING)
    ),
    "checkpoint": pb.RpcResponse(checkpoint=pb.CheckpointResponse()),
    "get_checkpoint": pb.RpcResponse(get_checkpoint=pb.GetCheckpointResponse()),
    "poll_signals": pb.RpcResponse(poll_signals=pb.PollSignalsResponse()),
}


def _answer(reply: pb.RpcResponse | None):
    return lambda request, services: reply


ECHO_SERVICE = Service(
    "instance",
    pb.RpcRequest,
    {
        name: dispatch.Operation(name, _answer(_CANNED.get(name)), operation.error_code)
        for name, operation in dispatch.INSTANCE_OPERATIONS.items()
    },
)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m runtara.bench.echo")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-concurrent", type=int, default=32)
    parser.add_argument("--management-addr", type=config.address, metavar="HOST:PORT")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="runtara-echo-") as runs_dir:
        server = InstanceServer(
            config.ServerConfig(
                host=arguments.host,
                port=arguments.port,
                max_concurrent=arguments.max_concurrent,
                management_addr=arguments.management_addr,
                runs_dir=Path(runs_dir),
            ),
            None,
            instance_service=ECHO_SERVICE,
            credentials=credentials.Credentials(
                read=credentials.generate().read,
                operate=os.environ.get("RUNTARA_MANAGEMENT_TOKEN")
                or credentials.generate().operate,
            ),
        )
        server.start()
        if server.management_address is not None:
            print("management protocol on {}:{}".format(*server.management_address), flush=True)
        print("listening on {}:{}".format(*server.address), flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        stop.wait()
        server.stop(grace=2)


if __name__ == "__main__":
    main()
