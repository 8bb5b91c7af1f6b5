"""The HTTP endpoint of a server process: probes, the token rule, the browser's
rules, and every kind of bad input (each answered clearly, nothing changed)."""

from __future__ import annotations

import html
import socket
import sqlite3

import pytest

from runtara import records
from runtara.config import StorageConfig
from runtara.protocol import instance_pb2 as pb
from runtara.storage import selection
from tests.browser.serving import HttpServing
from tests.support import RpcClient, run_cli, sqlite_url, wait_for

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def open_server(tmp_path_factory):
    """No token: loopback only, anyone who reaches it."""
    folder = tmp_path_factory.mktemp("open")
    url = sqlite_url(folder) + "?busy_timeout_ms=300"
    running = HttpServing(folder, "--no-launcher", "--database-url", url)
    client = RpcClient(running.server.address)
    assert client.register("live").success
    assert not client.checkpoint("live", "step-1", b"\x00state").HasField("error")
    assert client.register("done").success
    client.event("done", pb.EVENT_COMPLETED, b"finished")
    client.close()
    yield running
    assert running.stop() == 0


@pytest.fixture(scope="module")
def guarded_server(tmp_path_factory):
    running = HttpServing(
        tmp_path_factory.mktemp("guarded"), "--no-launcher", "--management-token", TOKEN
    )
    yield running
    assert running.stop() == 0


def pending_signal(serving: HttpServing, instance_id: str):
    storage = selection.open_driver(StorageConfig(database_url=serving.url), workers=1)
    try:
        return storage.run(lambda tx: tx.get_pending_signal(instance_id), write=False)
    finally:
        storage.close()


# --- probes ---------------------------------------------------------------------


def test_the_probes_answer_without_a_token(guarded_server):
    assert guarded_server.get("/healthz").text == "ok\n"
    ready = guarded_server.get("/readyz")
    assert (ready.status, ready.text) == (200, "ready\n")


def test_readyz_says_why_while_the_storage_takes_no_writes(open_server):
    database = sqlite3.connect(open_server.url.removeprefix("sqlite:").split("?")[0])
    database.execute("BEGIN IMMEDIATE")  # holds SQLite's write lock
    try:
        not_ready = wait_for(lambda: (r := open_server.get("/readyz")).status == 503 and r, 10)
        assert not_ready.text.startswith("not ready: the storage does not accept writes:")
        assert "locked" in not_ready.text
        assert open_server.get("/healthz").status == 200
    finally:
        database.rollback()
        database.close()
    wait_for(lambda: open_server.get("/readyz").status == 200, 10)


# --- the token ------------------------------------------------------------------


def test_without_the_token_metrics_and_pages_are_refused_and_logged(guarded_server):
    metrics = guarded_server.get("/metrics")
    assert metrics.status == 401
    assert metrics.headers["www-authenticate"].startswith("Bearer")
    guarded_server.logged("HTTP GET /metrics from 127.0.0.1 refused: missing token")
    wrong = guarded_server.get("/metrics", Authorization="Bearer nope")
    assert wrong.status == 401
    guarded_server.logged("refused: wrong token")
    page = guarded_server.get("/instances?status=running")
    assert page.status == 401 and "Log in" in page.text
    assert 'name="next" value="/instances?status=running"' in page.text
    action = guarded_server.post("/instances/x/pause", {"confirmed": "yes"})
    assert action.status == 401


def test_a_script_sends_the_token_as_a_bearer_header(guarded_server):
    reply = guarded_server.get("/metrics", Authorization=f"Bearer {TOKEN}")
    assert reply.status == 200 and "runtara_requests_total" in reply.text


def test_the_login_form_sets_a_cookie_that_opens_the_console(guarded_server):
    refused = guarded_server.post("/login", {"token": "nope", "next": "/instances"})
    assert refused.status == 401 and "That is not this server" in refused.text
    assert "set-cookie" not in refused.headers
    guarded_server.logged("HTTP login from 127.0.0.1 refused: wrong token")
    login = guarded_server.post("/login", {"token": TOKEN, "next": "/instances?page=1"})
    assert login.status == 303 and login.headers["location"] == "/instances?page=1"
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    session = cookie.split(";", 1)[0]
    assert guarded_server.get("/instances", Cookie=session).status == 200
    assert guarded_server.get("/instances", Cookie="runtara_console=forged").status == 401


def test_login_never_redirects_to_another_site(guarded_server):
    login = guarded_server.post("/login", {"token": TOKEN, "next": "//evil.example/x"})
    assert login.headers["location"] == "/instances"


def test_a_non_loopback_address_needs_the_token(tmp_path):
    refused = run_cli(
        "--http-addr", "0.0.0.0:0", "--database-url", sqlite_url(tmp_path), cwd=tmp_path
    )
    assert refused.returncode == 2
    assert "RUNTARA_HTTP_ADDR exposes the metrics and the console beyond loopback" in refused.stderr


def test_an_address_that_does_not_parse_is_refused(tmp_path):
    refused = run_cli("--http-addr", "8080", cwd=tmp_path)
    assert refused.returncode == 2
    assert "--http-addr / RUNTARA_HTTP_ADDR: '8080' is not HOST:PORT" in refused.stderr


def test_a_taken_port_stops_the_server_with_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = run_cli(
            "--port", "0", "--no-launcher", "--http-addr", f"127.0.0.1:{port}", cwd=tmp_path
        )
    assert refused.returncode == 2
    assert (
        f"error: cannot listen on 127.0.0.1:{port} (TCP, --http-addr / RUNTARA_HTTP_ADDR): "
        "address already in use" in refused.stderr
    )


# --- the browser's rules ------------------------------------------------------------


def test_a_host_name_other_than_loopback_is_refused(open_server):
    rebound = open_server.get("/instances", Host="evil.example:8080")
    assert rebound.status == 403
    open_server.logged("refused: Host 'evil.example:8080' is not this server's")
    assert open_server.get("/instances", Host=f"localhost:{open_server.port}").status == 200
    assert open_server.get("/instances", Host=f"[::1]:{open_server.port}").status == 200


def test_an_action_from_another_sites_page_is_refused(open_server):
    host = f"127.0.0.1:{open_server.port}"
    fields = {"confirmed": "yes"}
    for headers in (
        {"Origin": "http://evil.example", "Host": host},
        {"Sec-Fetch-Site": "cross-site", "Host": host},
        {"Origin": "null", "Host": host},
    ):
        assert open_server.post("/instances/live/cancel", fields, **headers).status == 403
    assert pending_signal(open_server, "live") is None


# --- actions --------------------------------------------------------------------------


def test_an_action_asks_for_confirmation_then_sends(open_server):
    ask = open_server.post("/instances/live/pause", {"payload": "maintenance"})
    assert ask.status == 200 and "Pause live?" in ask.text
    assert 'name="confirmed" value="yes"' in ask.text and 'value="maintenance"' in ask.text
    assert pending_signal(open_server, "live") is None
    host = f"127.0.0.1:{open_server.port}"
    done = open_server.post(
        "/instances/live/pause",
        {"payload": "maintenance", "confirmed": "yes"},
        Origin=f"http://{host}",
        Host=host,
    )
    assert done.status == 303 and done.headers["location"] == "/instances/live?sent=pause"
    signal = pending_signal(open_server, "live")
    assert (signal.signal_type, signal.payload) == (records.SignalType.PAUSE, b"maintenance")
    open_server.logged("console: pause sent to instance 'live' (from 127.0.0.1)")
    page = open_server.get(done.headers["location"])
    assert "Pause sent" in page.text and "maintenance" in page.text


def test_a_checkpoint_downloads_as_its_exact_bytes(open_server):
    reply = open_server.get("/instances/live/checkpoints/step-1")
    assert reply.status == 200 and reply.body == b"\x00state"
    assert reply.headers["content-type"] == "application/octet-stream"
    assert reply.headers["content-disposition"].startswith('attachment; filename="live-step-1.bin"')


# --- bad input: each kind answered clearly, nothing changed ---------------------------


@pytest.mark.parametrize(
    ("method", "path", "fields", "status", "says"),
    [
        ("GET", "/instances?status=sleepy", None, 400, "status must be one of pending, running"),
        ("GET", "/instances?page=0", None, 400, "page must be a page number from 1"),
        ("GET", f"/instances?page={10**30}", None, 400, "page must be a page number from 1"),
        ("GET", "/instances/a%00b", None, 400, "must not contain NUL characters"),
        ("GET", "/instances?tenant=a%00", None, 400, "must not contain NUL characters"),
        ("GET", "/instances/live?events=x", None, 400, "events must be a page number"),
        ("GET", "/instances/ghost", None, 404, "No instance has the id 'ghost'"),
        ("GET", "/instances/live/checkpoints/nope", None, 404, "has no checkpoint 'nope'"),
        ("GET", "/instances/ghost/checkpoints/x", None, 404, "No instance has the id"),
        ("GET", "/instances/live/logs/stdin", None, 404, "Logs are stdout and stderr"),
        ("GET", "/nowhere", None, 404, "Nothing answers GET /nowhere here"),
        ("POST", "/instances/live/reboot", {"confirmed": "yes"}, 404, "Nothing answers POST"),
        ("POST", "/instances/live/signal", {"confirmed": "yes"}, 400, "needs the checkpoint id"),
        ("POST", "/instances/ghost/cancel", {"confirmed": "yes"}, 409, "'ghost' not found"),
        ("POST", "/instances/done/cancel", {"confirmed": "yes"}, 409, "'completed' state"),
        ("POST", "/instances/ghost/cancel", {}, 404, "No instance has the id"),
    ],
)
def test_bad_input_is_answered_clearly(open_server, method, path, fields, status, says):
    if method == "GET":
        reply = open_server.get(path)
    else:
        reply = open_server.post(path, fields)
    assert reply.status == status, reply.text
    assert says in html.unescape(reply.text)
    assert pending_signal(open_server, "done") is None


def test_a_body_too_large_or_unreadable_is_refused(open_server):
    too_large = open_server.request(
        "POST",
        "/instances/live/cancel",
        body=b"x",
        headers={"Content-Length": str(2 * 1024 * 1024), "Content-Type": "text/plain"},
    )
    assert too_large.status == 413
    not_a_number = open_server.request(
        "POST", "/instances/live/cancel", body=b"", headers={"Content-Length": "lots"}
    )
    assert not_a_number.status == 400
    assert pending_signal(open_server, "done") is None
