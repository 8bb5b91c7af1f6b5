"""The ``naive`` baseline: a plain aioquic server, the way aioquic's examples write one.

Default event loop, default ``QuicConfiguration`` (no ALPN, as runtara needs),
a stream handler with asyncio stream readers and writers, and one
``run_in_executor`` per request; it answers as a checkpoint of a new id would,
without storage. Run as ``python -m runtara.bench.naive --port 0``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import struct

from aioquic.asyncio import serve
from aioquic.quic.configuration import QuicConfiguration

from runtara import aioquic_adapter
from runtara.protocol import instance_pb2 as pb
from runtara.server import tls

HEADER = struct.Struct(">IH")
REPLY = pb.RpcResponse(checkpoint=pb.CheckpointResponse()).SerializeToString()


def answer(payload: bytes) -> bytes:
    pb.RpcRequest.FromString(payload)
    return HEADER.pack(len(REPLY), 2) + REPLY


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    length, _ = HEADER.unpack(await reader.readexactly(HEADER.size))
    payload = await reader.readexactly(length)
    reply = await asyncio.get_running_loop().run_in_executor(None, answer, payload)
    writer.write(reply)
    writer.write_eof()


async def main(host: str, port: int) -> None:
    identity = tls.self_signed()
    configuration = QuicConfiguration(is_client=False)
    configuration.certificate = identity.certificate
    configuration.private_key = identity.private_key
    tasks = set()

    def on_stream(reader, writer) -> None:
        task = asyncio.ensure_future(handle(reader, writer))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    server = await serve(host, port, configuration=configuration, stream_handler=on_stream)
    address = aioquic_adapter.server_transport(server).get_extra_info("sockname")[:2]
    print("listening on {}:{}".format(*address), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m runtara.bench.naive")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.host, arguments.port))
