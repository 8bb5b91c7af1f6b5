"""The HTTP server: sockets and threads only; what to answer is the caller's.

The standard library's ``http.server`` is enough for an operator's endpoint
(a scrape every few seconds, a person clicking through the console), and
keeps the server free of another network stack. It runs off the QUIC event
loop: one thread accepts, at most ``workers`` threads answer. When they are
all busy the accepting thread waits and new connections stay in the kernel's
backlog, so a flood costs no memory. Every connection carries one request
(HTTP/1.0: a browser's idle keep-alive connections would otherwise hold the
workers), and a client gets ``timeout`` seconds to send it.

``reuse_port`` binds with SO_REUSEPORT, so that the server processes of
``runtara-core --processes N`` share one port (the kernel spreads the
connections among them).
"""

from __future__ import annotations

import concurrent.futures
import http.server
import logging
import socket
import socketserver
import threading
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from runtara.http import messages
from runtara.http.messages import Request, Response

logger = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
"""Largest request body (a console form) accepted; more is answered 413."""


class HttpServer:
    """Serves ``handle`` on ``host``:``port`` (bound at construction: OSError if it
    cannot be) once started."""

    def __init__(
        self,
        host: str,
        port: int,
        handle: Callable[[Request], Response],
        *,
        reuse_port: bool = False,
        workers: int = 4,
        timeout: float = 10.0,
    ) -> None:
        self._server = _Server(
            (host, port), handle, reuse_port=reuse_port, workers=workers, timeout=timeout
        )
        self.address: tuple[str, int] = self._server.server_address[:2]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="runtara-http", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, close the socket; requests being answered finish (their
        threads are not waited for longer than ``timeout``)."""
        self._server.stopping = True
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout)
        self._server.server_close()
        self._server.pool.shutdown(wait=False, cancel_futures=True)


class _Server(http.server.HTTPServer):
    def __init__(
        self,
        address: tuple[str, int],
        handle: Callable[[Request], Response],
        *,
        reuse_port: bool,
        workers: int,
        timeout: float,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.handle = handle
        self.request_timeout = timeout
        self.pool = concurrent.futures.ThreadPoolExecutor(workers, "runtara-http-worker")
        self._slots = threading.BoundedSemaphore(workers)
        self._reuse_port = reuse_port
        self.stopping = False
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        if self._reuse_port:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        # HTTPServer.server_bind would look the host name up (getfqdn): not needed.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request, client_address) -> None:
        while not self._slots.acquire(timeout=0.5):
            if self.stopping:
                self.shutdown_request(request)
                return
        try:
            self.pool.submit(self._answer, request, client_address)
        except RuntimeError:  # stopping: the pool takes no more work
            self._slots.release()
            self.shutdown_request(request)

    def _answer(self, request, client_address) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def handle_error(self, request, client_address) -> None:
        logger.exception("HTTP request from %s failed", client_address[0])


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def version_string(self) -> str:
        return "runtara-core"

    def setup(self) -> None:
        self.timeout = self.server.request_timeout
        super().setup()

    def do_GET(self) -> None:
        self._answer("GET")

    def do_HEAD(self) -> None:
        self._answer("GET", body=False)

    def do_POST(self) -> None:
        self._answer("POST")

    def _answer(self, method: str, *, body: bool = True) -> None:
        target = urlsplit(self.path)
        headers = {name.lower(): value for name, value in self.headers.items()}
        form: dict[str, str] = {}
        if method == "POST":
            length = headers.get("content-length", "0")
            if not length.isdigit():
                self._send(messages.text(400, "Content-Length is not a number\n"), body)
                return
            if int(length) > MAX_BODY:
                self._send(messages.text(413, f"a body may hold at most {MAX_BODY} bytes\n"), body)
                return
            raw = self.rfile.read(int(length))
            if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                try:
                    form = _first_values(raw.decode("utf-8"))
                except (UnicodeDecodeError, ValueError) as error:
                    self._send(messages.text(400, f"the form cannot be read: {error}\n"), body)
                    return
        try:
            query = _first_values(target.query)
        except ValueError as error:
            self._send(messages.text(400, f"the query cannot be read: {error}\n"), body)
            return
        request = Request(
            method=method,
            path=target.path,
            query=query,
            headers=headers,
            form=form,
            client=self.client_address[0],
        )
        try:
            response = self.server.handle(request)
        except Exception:
            logger.exception("HTTP %s %s failed", method, target.path)
            response = messages.text(500, "internal error: the server's log says more\n")
        self._send(response, body)

    def _send(self, response: Response, body: bool) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in (*messages.SECURITY_HEADERS, *response.headers):
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(response.body)

    def log_message(self, format: str, *args) -> None:
        logger.debug("HTTP %s: " + format, self.client_address[0], *args)

    def log_error(self, format: str, *args) -> None:
        logger.info("HTTP %s: " + format, self.client_address[0], *args)


def _first_values(text: str) -> dict[str, str]:
    parsed = parse_qs(text, keep_blank_values=True, strict_parsing=False, max_num_fields=100)
    return {name: values[0] for name, values in parsed.items()}
