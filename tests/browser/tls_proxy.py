"""A TLS-terminating proxy for the console's tests: browsers speak HTTPS to it,
and it passes the bytes on, decrypted, to a plain HTTP server, as a reverse
proxy in front of ``runtara-core --public-url https://...`` would.

It runs on an event loop in a thread of its own, with a self-signed
certificate for ``localhost`` (the browser's context is told to accept it).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from runtara.server import tls


class TlsProxy:
    """Listens on a free port of 127.0.0.1 (``port``, known at construction: the
    server behind it is told its public URL) and, once started, forwards each
    connection to ``backend``."""

    def __init__(self, folder: Path) -> None:
        self.backend: tuple[str, int] | None = None
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen()
        self.port = self._socket.getsockname()[1]
        identity = tls.self_signed("localhost")
        certificate, key = folder / "proxy-cert.pem", folder / "proxy-key.pem"
        certificate.write_bytes(identity.certificate.public_bytes(serialization.Encoding.PEM))
        key.write_bytes(
            identity.private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(certificate, key)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self, backend: tuple[str, int]) -> None:
        self.backend = backend
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._socket.close()

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(
            self._forward, sock=self._socket, ssl=self._context
        )

    async def _forward(self, client_reader, client_writer) -> None:
        assert self.backend is not None
        try:
            backend_reader, backend_writer = await asyncio.open_connection(*self.backend)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            _pipe(client_reader, backend_writer), _pipe(backend_reader, client_writer)
        )


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()
