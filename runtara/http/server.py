"""The HTTP server: sockets, its event loop and its threads; what to answer is the caller's.

uvicorn serves HTTP/1.1 (through h11, a strict parser) on an asyncio event
loop of its own, in a thread of its own: never on the QUIC event loop. An
idle or slow connection costs no thread, and
:mod:`runtara.http.connections` caps the connections per client and gives
each request a deadline. The caller's ``handle`` runs on the loop and
answers at once what needs no I/O (probes, refusals, the login form); what
reads the storage it returns as work, which runs on a small pool of threads
(the storage API blocks), so that a slow storage never delays ``/healthz``.

Each connection carries one request: every response says
``Connection: close``. ``reuse_port`` binds with SO_REUSEPORT, so that the
server processes of ``runtara-core --processes N`` share one port (the
kernel spreads the connections among them). Forwarded headers
(``X-Forwarded-*``) are ignored: the client is the peer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import uvicorn

from runtara.http import messages
from runtara.http.connections import ConnectionGuard, Limits, protocol_class
from runtara.http.messages import Request, Response

logger = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
"""Largest request body (a console form) accepted; more is answered 413."""
METHODS = ("GET", "HEAD", "POST")

Handle = Callable[[Request], "Response | Callable[[], Response]"]


class HttpServer:
    """Serves ``handle`` on ``host``:``port`` (bound at construction: OSError if it
    cannot be) once started."""

    def __init__(
        self,
        host: str,
        port: int,
        handle: Handle,
        *,
        reuse_port: bool = False,
        workers: int = 4,
        limits: Limits | None = None,
    ) -> None:
        self._socket = _bound(host, port, reuse_port)
        self.address: tuple[str, int] = self._socket.getsockname()[:2]
        self._handle = handle
        self._guard = ConnectionGuard(limits or Limits())
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, "runtara-http-worker")
        # uvicorn's own log says, at WARNING, what any client can cause (an invalid
        # request): only its errors are kept, unless the log is at debug.
        if not logger.isEnabledFor(logging.DEBUG):
            logging.getLogger("uvicorn").setLevel(logging.ERROR)
        config = uvicorn.Config(
            self._asgi,
            interface="asgi3",
            http=protocol_class(self._guard),
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            proxy_headers=False,
            server_header=False,
            date_header=True,
            timeout_graceful_shutdown=5,
        )
        self._uvicorn = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="runtara-http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting and close the socket; responses being sent get
        ``timeout`` seconds to finish."""
        self._uvicorn.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._socket.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _serve(self) -> None:
        asyncio.run(self._uvicorn.serve(sockets=[self._socket]))

    # --- the ASGI application ---------------------------------------------------------

    async def _asgi(self, scope: dict[str, Any], receive, send) -> None:
        if scope["type"] != "http":
            return
        received = await _received(scope, receive)
        client = scope.get("client")
        if client is not None:
            self._guard.received((client[0], client[1]))
        if received is None:
            return  # the client left
        try:
            response = received if isinstance(received, Response) else await self._answer(received)
        except Exception:
            logger.exception("HTTP %s %s failed", scope["method"], scope["raw_path"].decode())
            response = messages.text(500, "internal error: the server's log says more\n")
        await _send(send, response, body=scope["method"] != "HEAD")

    async def _answer(self, request: Request) -> Response:
        answer = self._handle(request)
        if isinstance(answer, Response):
            return answer
        return await asyncio.get_running_loop().run_in_executor(self._pool, answer)


async def _received(scope: dict[str, Any], receive) -> Request | Response | None:
    """The request; or the response refusing it; None when the client left. The
    connection's deadline bounds the wait."""
    if scope["method"] not in METHODS:
        return messages.text(405, f"{scope['method']} is not answered here\n", _ALLOW)
    length = _header(scope, b"content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY:
        return messages.text(413, f"a body may hold at most {MAX_BODY} bytes\n")
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if len(body) > MAX_BODY:
            return messages.text(413, f"a body may hold at most {MAX_BODY} bytes\n")
        if not message.get("more_body", False):
            return _request(scope, bytes(body))


_ALLOW = ("Allow", ", ".join(METHODS))


def _request(scope: dict[str, Any], body: bytes) -> Request | Response:
    """The request ``scope`` and ``body`` make, or the 400 that says why none."""
    method = "GET" if scope["method"] == "HEAD" else scope["method"]
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        if name in headers:
            value = headers[name] + ("; " if name == "cookie" else ", ") + value
        headers[name] = value
    form: dict[str, str] = {}
    content_type = headers.get("content-type", "")
    if method == "POST" and content_type.startswith("application/x-www-form-urlencoded"):
        try:
            form = _first_values(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as error:
            return messages.text(400, f"the form cannot be read: {error}\n")
    try:
        query = _first_values(scope["query_string"].decode("latin-1"))
    except ValueError as error:
        return messages.text(400, f"the query cannot be read: {error}\n")
    client = scope.get("client")
    return Request(
        method=method,
        path=scope["raw_path"].decode("latin-1"),
        query=query,
        headers=headers,
        form=form,
        client=client[0] if client else "",
    )


async def _send(send, response: Response, *, body: bool) -> None:
    defaults = {name.lower(): (name, value) for name, value in messages.SECURITY_HEADERS}
    for name, _ in response.headers:
        defaults.pop(name.lower(), None)
    headers = [
        ("Content-Type", response.content_type),
        ("Content-Length", str(len(response.body))),
        *defaults.values(),
        *response.headers,
        ("Connection", "close"),
    ]
    await send(
        {
            "type": "http.response.start",
            "status": response.status,
            "headers": [(name.encode(), value.encode()) for name, value in headers],
        }
    )
    await send({"type": "http.response.body", "body": response.body if body else b""})


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for raw_name, raw_value in scope["headers"]:
        if raw_name == name:
            return raw_value.decode("latin-1")
    return None


def _first_values(text: str) -> dict[str, str]:
    parsed = parse_qs(text, keep_blank_values=True, strict_parsing=False, max_num_fields=100)
    return {name: values[0] for name, values in parsed.items()}


def _bound(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    bound = socket.socket(family, socket.SOCK_STREAM)
    try:
        bound.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            bound.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        bound.bind((host, port))
        bound.listen(128)
    except OSError:
        bound.close()
        raise
    return bound
