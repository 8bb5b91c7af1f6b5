"""The HTTP server under clients that hold connections: caps per client and in
all, the request deadline, work off the event loop, and a clean stop (real
sockets on loopback; each loopback address is a client of its own)."""

from __future__ import annotations

import http.client
import select
import socket
import threading

import pytest

from runtara.http import messages
from runtara.http.connections import Limits
from runtara.http.messages import Request, Response
from runtara.http.server import HttpServer
from tests.support import wait_for

RELEASE = threading.Event()


def handle(request: Request) -> Response | object:
    if request.path == "/blocked":
        return lambda: RELEASE.wait(30) and messages.text(200, "released\n")
    if request.path == "/fails":
        raise RuntimeError("a bug")
    if request.path == "/bad-header":
        return messages.redirect(request.query["to"])
    return messages.text(200, f"{request.method} {request.path} from {request.client}\n")


@pytest.fixture
def serve():
    started = []

    def start(limits: Limits | None = None, port: int = 0, **options) -> HttpServer:
        server = HttpServer("127.0.0.1", port, handle, limits=limits, **options)
        server.start()
        started.append(server)
        return server

    yield start
    RELEASE.set()
    for server in started:
        server.stop()
    RELEASE.clear()


def get(server: HttpServer, path: str = "/", source: str = "127.0.0.1") -> tuple[int, str]:
    connection = http.client.HTTPConnection(*server.address, timeout=10, source_address=(source, 0))
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def held(server: HttpServer, source: str) -> socket.socket:
    """A connection from ``source`` that has sent nothing yet."""
    connection = socket.socket()
    connection.settimeout(10)
    connection.bind((source, 0))
    connection.connect(server.address)
    return connection


def answer_to(connection: socket.socket) -> bytes:
    """Everything the server sends before it closes ``connection``."""
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


def test_a_client_holding_its_share_of_connections_gets_503_and_others_are_served(serve):
    server = serve(Limits(per_client=3))
    mine = [held(server, "127.0.0.5") for _ in range(3)]
    try:
        wait_for(lambda: get(server, source="127.0.0.6")[0] == 200, 10)
        extra = held(server, "127.0.0.5")
        refused = answer_to(extra)
        extra.close()
        assert refused.startswith(b"HTTP/1.1 503 Service Unavailable")
        assert refused.endswith(b"too many connections from your address\n")
        assert get(server, source="127.0.0.6") == (200, "GET / from 127.0.0.6\n")
        mine.pop().close()
        wait_for(lambda: get(server, source="127.0.0.5")[0] == 200, 10)
    finally:
        for connection in mine:
            connection.close()


def test_connections_beyond_the_total_are_refused(serve):
    server = serve(Limits(per_client=10, total=2))
    mine = [held(server, f"127.0.0.{7 + number}") for number in range(2)]
    try:
        wait_for(lambda: get(server)[0] == 503, 10)
        with held(server, "127.0.0.9") as another:
            assert answer_to(another).endswith(b"too many connections\n")
    finally:
        for connection in mine:
            connection.close()
    wait_for(lambda: get(server)[0] == 200, 10)


def trickled(connection: socket.socket, data: bytes, every: float = 0.05) -> bytes:
    """Send ``data`` a byte every ``every`` seconds until the server answers or closes
    the connection; what it answered (AssertionError if it never does)."""
    for byte in data:
        if select.select([connection], [], [], every)[0]:
            return answer_to(connection)
        try:
            connection.sendall(bytes([byte]))
        except OSError:  # closed between the two calls
            return answer_to(connection)
    raise AssertionError("the server took all of it")


def test_a_request_that_does_not_arrive_whole_in_time_is_answered_408(serve):
    server = serve(Limits(request_deadline=0.5))
    silent = held(server, "127.0.0.11")
    slow_body = held(server, "127.0.0.13")
    slow_body.sendall(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nab")
    trickling = held(server, "127.0.0.12")
    head = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-Pad: 1\r\n" * 60  # 30 s at 20 bytes/s
    assert trickled(trickling, head).startswith(b"HTTP/1.1 408 Request Timeout")
    for connection in (silent, slow_body):
        assert answer_to(connection).startswith(b"HTTP/1.1 408 Request Timeout")
    for connection in (silent, trickling, slow_body):
        connection.close()
    assert get(server, source="127.0.0.12")[0] == 200


def test_work_runs_off_the_event_loop_so_the_probe_answers(serve):
    server = serve(workers=2)
    blocked = [threading.Thread(target=get, args=(server, "/blocked")) for _ in range(4)]
    for thread in blocked:
        thread.start()
    try:
        # Both worker threads wait, and two more requests queue for them.
        assert get(server, "/healthz") == (200, "GET /healthz from 127.0.0.1\n")
    finally:
        RELEASE.set()
        for thread in blocked:
            thread.join(30)


def test_a_failing_handler_or_an_unsafe_header_is_a_500_not_a_broken_connection(serve, caplog):
    server = serve()
    assert get(server, "/fails") == (500, "internal error: the server's log says more\n")
    assert "HTTP GET /fails failed" in caplog.text
    assert get(server, "/bad-header?to=/%0d%0aX-Injected:%20yes")[0] == 500
    assert get(server, "/bad-header?to=/fine")[0] == 303


def test_head_gets_the_headers_without_the_body(serve):
    server = serve()
    connection = http.client.HTTPConnection(*server.address, timeout=10)
    try:
        connection.request("HEAD", "/page")
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Length") == str(len("GET /page from 127.0.0.1\n"))
        assert response.read() == b""
    finally:
        connection.close()


def test_every_response_closes_its_connection(serve):
    server = serve()
    with socket.create_connection(server.address, timeout=10) as connection:
        connection.sendall(
            b"GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        answer = answer_to(connection)
    assert answer.count(b"HTTP/1.1 200") == 1 and b"Connection: close" in answer


def test_with_reuse_port_two_servers_share_a_port_and_a_stopped_one_lets_go(serve):
    first = serve(reuse_port=True)
    second = serve(reuse_port=True, port=first.address[1])
    assert second.address == first.address
    first.stop()
    second.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(first.address, timeout=10)
