"""The HTTP endpoint of a server process: probes, the two credentials, console
sessions, guessing, the browser's rules, an HTTPS proxy in front, slow
clients, and every kind of bad input (each answered clearly, nothing changed)."""

from __future__ import annotations

import html
import http.client
import socket
import sqlite3
import time

import pytest

from runtara import records
from runtara.config import StorageConfig
from runtara.credentials import Credentials, Role
from runtara.http import sessions
from runtara.protocol import instance_pb2 as pb
from runtara.storage import selection
from tests.browser.serving import OPERATE_TOKEN, READ_TOKEN, HttpServing
from tests.support import RpcClient, run_cli, sqlite_url, wait_for

PUBLIC_URL = "https://console.example:8443"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One server process (so that one process counts every failed check), with an
    instance that runs and one that completed."""
    folder = tmp_path_factory.mktemp("http")
    url = sqlite_url(folder) + "?busy_timeout_ms=300"
    running = HttpServing(folder, "--no-launcher", "--processes", "1", "--database-url", url)
    client = RpcClient(running.server.address)
    assert client.register("live").success
    assert not client.checkpoint("live", "step-1", b"\x00state").HasField("error")
    assert client.register("done").success
    client.event("done", pb.EVENT_COMPLETED, b"finished")
    client.close()
    yield running
    assert running.stop() == 0


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    """A server whose console browsers reach through an HTTPS proxy at PUBLIC_URL."""
    folder = tmp_path_factory.mktemp("proxied")
    running = HttpServing(folder, "--no-launcher", "--processes", "1", "--public-url", PUBLIC_URL)
    client = RpcClient(running.server.address)
    assert client.register("behind").success
    client.close()
    yield running
    assert running.stop() == 0


@pytest.fixture(scope="module")
def operator(served):
    return served.session("operate")


def pending_signal(serving: HttpServing, instance_id: str):
    storage = selection.open_driver(StorageConfig(database_url=serving.url), workers=1)
    try:
        return storage.run(lambda tx: tx.get_pending_signal(instance_id), write=False)
    finally:
        storage.close()


def raw(serving: HttpServing, request: bytes) -> bytes:
    """What the server answers to ``request``, sent as is."""
    with socket.create_connection(("127.0.0.1", serving.port), timeout=10) as connection:
        connection.sendall(request)
        connection.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def cookie_of(serving: HttpServing, role: Role, now: float) -> dict[str, str]:
    """A session cookie the server's own credentials sign, opened at ``now``."""
    signer = sessions.Sessions(Credentials(read=READ_TOKEN, operate=OPERATE_TOKEN))
    _, value = signer.open(role, now)
    return {"Cookie": f"{sessions.COOKIE}={value}"}


# --- probes ---------------------------------------------------------------------------


def test_the_probes_answer_anyone(served):
    assert served.get("/healthz").text == "ok\n"
    ready = served.get("/readyz")
    assert (ready.status, ready.text) == (200, "ready\n")


def test_readyz_says_why_only_to_a_caller_with_a_credential(served):
    database = sqlite3.connect(served.url.removeprefix("sqlite:").split("?")[0])
    database.execute("BEGIN IMMEDIATE")  # holds SQLite's write lock
    try:
        wait_for(lambda: served.get("/readyz").status == 503, 20)
        anonymous = served.get("/readyz")
        assert (anonymous.status, anonymous.text) == (503, "not ready\n")
        told = served.get("/readyz", **served.bearer("read"))
        assert told.status == 503
        assert told.text.startswith("not ready: the storage does not accept writes:")
        assert served.get("/healthz").status == 200
    finally:
        database.rollback()
        database.close()
    wait_for(lambda: served.get("/readyz").status == 200, 20)


# --- credentials ------------------------------------------------------------------------


def test_without_a_credential_everything_but_the_probes_is_refused(served):
    metrics = served.get("/metrics")
    assert metrics.status == 401
    assert metrics.headers["www-authenticate"].startswith("Bearer")
    page = served.get("/instances?status=running")
    assert page.status == 401 and "Log in" in page.text
    assert 'name="next" value="/instances?status=running"' in page.text
    assert served.get("/").status == 401
    assert served.get("/instances/live/checkpoints/step-1").status == 401
    action = served.post("/instances/live/pause", {"confirmed": "yes"})
    assert action.status == 401
    assert pending_signal(served, "live") is None


def test_the_read_token_views_and_scrapes_but_cannot_act(served):
    reader = served.bearer("read")
    scrape = served.get("/metrics", **reader)
    assert scrape.status == 200 and "runtara_requests_total" in scrape.text
    assert served.get("/instances/live/checkpoints/step-1", **reader).body == b"\x00state"
    session = served.session("read")
    page = served.get("/instances/live", **session)
    assert page.status == 200
    assert "This session may only read" in page.text and "/instances/live/pause" not in page.text
    for credential in (reader, session):
        refused = served.post("/instances/live/pause", {"confirmed": "yes"}, **credential)
        assert refused.status == 403 and "may only read" in refused.text
    assert pending_signal(served, "live") is None
    served.logged("refused: this credential may only read: actions need the operate one")


def test_the_login_form_opens_a_session_of_the_tokens_role(served):
    refused = served.post("/login", {"token": "nope", "next": "/instances"}, source="127.0.0.31")
    assert refused.status == 401 and "That is not a token of this server" in refused.text
    assert "set-cookie" not in refused.headers
    served.logged("HTTP: a credential check from 127.0.0.31 failed")
    logins = [served.post("/login", {"token": READ_TOKEN, "next": "/instances?page=1"})]
    logins.append(served.post("/login", {"token": READ_TOKEN, "next": "/instances"}))
    assert logins[0].status == 303 and logins[0].headers["location"] == "/instances?page=1"
    cookie = logins[0].headers["set-cookie"]
    flags = cookie.split("; ")[1:]
    assert sorted(flags) == ["HttpOnly", "Max-Age=43200", "Path=/", "SameSite=Strict"]
    assert READ_TOKEN not in cookie and OPERATE_TOKEN not in cookie
    values = [login.headers["set-cookie"].split(";", 1)[0] for login in logins]
    assert values[0] != values[1]  # each login opens a session of its own
    for value in values:
        assert served.get("/instances", Cookie=value).status == 200
    served.logged("HTTP login from 127.0.0.1: console session")


def test_a_forged_or_altered_session_is_refused(served):
    assert served.get("/instances", Cookie=f"{sessions.COOKIE}=forged").status == 401
    value = served.session("read")["Cookie"]
    altered = value.replace("=read.", "=operate.", 1)
    assert altered != value
    refused = served.get("/instances", Cookie=altered)
    assert refused.status == 401 and "Your session has ended" in refused.text
    other_server = sessions.Sessions(Credentials(read="x" * 20, operate="y" * 20))
    _, foreign = other_server.open(Role.OPERATE, time.time())
    assert served.get("/instances", Cookie=f"{sessions.COOKIE}={foreign}").status == 401


def test_an_expired_session_is_refused(served):
    fresh = cookie_of(served, Role.READ, time.time())
    assert served.get("/instances", **fresh).status == 200
    expired = cookie_of(served, Role.OPERATE, time.time() - sessions.LIFETIME - 1)
    refused = served.get("/instances/live", **expired)
    assert refused.status == 401 and "Your session has ended: log in again." in refused.text
    assert served.post("/instances/live/pause", {"confirmed": "yes"}, **expired).status == 401
    assert pending_signal(served, "live") is None


@pytest.mark.parametrize(
    "cookie",
    ['runtara_console="\\351"', "runtara_console=caf\xe9", 'runtara_console="\\303\\251"'],
    ids=["quoted-octal", "latin-1-byte", "utf-8-octal"],
)
def test_a_cookie_that_is_not_ascii_is_an_invalid_session_not_an_error(served, cookie):
    refused = served.get("/instances", Cookie=cookie)
    assert refused.status == 401 and "Log in" in refused.text
    assert served.get("/metrics", Cookie=cookie).status == 401
    assert not any("Traceback" in line or " ERROR " in line for line in served.server.log)


def test_logout_clears_the_session_cookie(served):
    session = served.session("operate")
    assert served.get("/instances", **session).status == 200
    assert "Log out" in served.get("/instances", **session).text
    out = served.post("/logout", {}, **session)
    assert out.status == 303 and out.headers["location"] == "/login"
    assert out.headers["set-cookie"].startswith(f"{sessions.COOKIE}=; ")
    assert "Max-Age=0" in out.headers["set-cookie"]
    served.logged("HTTP logout from 127.0.0.1: console session")
    foreign = served.post("/logout", {}, Origin="http://evil.example", **session)
    assert foreign.status == 403 and "set-cookie" not in foreign.headers


def test_guessing_is_refused_after_the_limit(served):
    guesser, neighbour = "127.0.0.41", "127.0.0.42"
    kept = served.session("read")  # opened before the guessing, from 127.0.0.1
    login = served.post("/login", {"token": READ_TOKEN}, source=guesser)
    kept_by_guesser = {"Cookie": login.headers["set-cookie"].split(";", 1)[0]}
    for number in range(10):
        wrong = {"Authorization": f"Bearer guess-{number}"}
        assert served.request("GET", "/metrics", headers=wrong, source=guesser).status == 401
    right = served.request("GET", "/metrics", headers=served.bearer("read"), source=guesser)
    assert right.status == 429 and "too many wrong credentials from 127.0.0.41" in right.text
    assert int(right.headers["retry-after"]) > 0
    form = served.request(
        "POST",
        "/login",
        body=f"token={OPERATE_TOKEN}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        source=guesser,
    )
    assert form.status == 429 and "Too many wrong tokens from your address" in form.text
    assert "set-cookie" not in form.headers
    # Sessions are no guesses: the guesser's own session and everyone else go on.
    assert (
        served.request("GET", "/instances", headers=kept_by_guesser, source=guesser).status == 200
    )
    neighbours = served.request("GET", "/metrics", headers=served.bearer("read"), source=neighbour)
    assert neighbours.status == 200
    assert served.get("/instances", **kept).status == 200
    served.logged("127.0.0.41 failed 10 credential checks within 60s")
    lines = [line for line in served.server.log if "127.0.0.41" in line]
    assert len(lines) == 3, lines  # the login, the first failure, the limit: not each guess


# --- where a login goes back to -------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "location"),
    [
        ("/instances?status=running", "/instances?status=running"),
        ("/instances/a b", "/instances/a%20b"),
        ("/instances/caf\xe9", "/instances/caf%C3%A9"),
        ("//evil.example/x", "/instances"),
        ("/\t/evil.example", "/instances"),
        ("/\\evil.example", "/instances"),
        ("\\/evil.example", "/instances"),
        ("https://evil.example/", "/instances"),
        ("javascript:alert(1)", "/instances"),
        ("/\r\nX-Injected: yes", "/instances"),
        ("/\x7f", "/instances"),
        ("", "/instances"),
    ],
)
def test_login_goes_back_only_to_a_page_of_this_site(served, target, location):
    login = served.post("/login", {"token": READ_TOKEN, "next": target})
    assert login.status == 303 and login.headers["location"] == location


def test_cr_and_lf_in_next_reach_no_header(served):
    body = f"token={READ_TOKEN}&next=/%0d%0aX-Injected:%20yes".encode()
    answer = raw(
        served,
        b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body,
    )
    head = answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert head[0] == b"HTTP/1.1 303 See Other"
    assert b"Location: /instances" in head
    assert not any(line.lower().startswith(b"x-injected") for line in head)
    form = served.get("/login?next=/%0d%0aX-Injected:%20yes")
    assert 'name="next" value="/instances"' in form.text


# --- the browser's rules ------------------------------------------------------------------


def test_an_action_from_another_sites_page_is_refused(served, operator):
    host = f"127.0.0.1:{served.port}"
    fields = {"confirmed": "yes"}
    for headers in (
        {"Origin": "http://evil.example", "Host": host},
        {"Origin": f"https://{host}", "Host": host},
        {"Sec-Fetch-Site": "cross-site", "Host": host},
        {"Sec-Fetch-Site": "same-site", "Host": host},
        {"Origin": "null", "Host": host},
    ):
        assert served.post("/instances/live/cancel", fields, **headers, **operator).status == 403
    assert pending_signal(served, "live") is None
    login = served.post("/login", {"token": READ_TOKEN}, Origin="http://evil.example")
    assert login.status == 403 and "set-cookie" not in login.headers


def test_the_pages_run_no_inline_script(served, operator):
    page = served.get("/instances/live", **operator)
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "<script>" not in page.text and "<style>" not in page.text
    assert '<script src="/static/console.js"></script>' in page.text
    script = served.get("/static/console.js")  # no secret in it: served to anyone
    assert script.status == 200 and "data-confirm" in script.text
    assert script.headers["content-type"].startswith("text/javascript")
    assert served.get("/static/console.css").headers["content-type"].startswith("text/css")
    assert served.get("/static/secrets.txt").status == 404


# --- behind an HTTPS proxy ---------------------------------------------------------------------


def test_behind_an_https_proxy_login_and_actions_work_and_the_cookie_is_secure(proxied):
    # What the proxy passes on: the browser's Origin, its own Host (the backend's address).
    backend = {"Host": f"127.0.0.1:{proxied.port}"}
    login = proxied.post(
        "/login", {"token": OPERATE_TOKEN, "next": "/instances"}, Origin=PUBLIC_URL, **backend
    )
    assert login.status == 303
    assert login.headers["set-cookie"].endswith("; Secure")
    session = {"Cookie": login.headers["set-cookie"].split(";", 1)[0]}
    acted = proxied.post(
        "/instances/behind/pause",
        {"confirmed": "yes", "payload": "through the proxy"},
        Origin=PUBLIC_URL,
        **{"Sec-Fetch-Site": "same-origin"},
        **backend,
        **session,
    )
    assert acted.status == 303 and acted.headers["location"] == "/instances/behind?sent=pause"
    assert pending_signal(proxied, "behind").payload == b"through the proxy"
    plain_origin = proxied.post(
        "/instances/behind/cancel",
        {"confirmed": "yes"},
        Origin=f"http://127.0.0.1:{proxied.port}",
        **backend,
        **session,
    )
    assert plain_origin.status == 403
    assert (
        proxied.post("/logout", {}, Origin=PUBLIC_URL, **session)
        .headers["set-cookie"]
        .endswith("; Secure")
    )
    proxied.logged(f"the console's origin is {PUBLIC_URL}")


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("ftp://console.example", "is not an origin such as"),
        ("https://console.example/runtara", "(no path, query or user)"),
        ("console.example:443", "is not an origin such as"),
    ],
)
def test_a_public_url_that_is_no_origin_is_refused(tmp_path, value, says):
    refused = run_cli("--http-addr", "127.0.0.1:0", "--public-url", value, cwd=tmp_path)
    assert refused.returncode == 2
    assert "--public-url / RUNTARA_PUBLIC_URL" in refused.stderr and says in refused.stderr


# --- slow and idle clients -------------------------------------------------------------------


def test_fifty_half_open_or_trickling_connections_do_not_starve_the_probes(served):
    held = []
    try:
        for number in range(50):
            connection = socket.create_connection(("127.0.0.1", served.port), timeout=10)
            if number % 2:
                connection.sendall(b"GET /instances HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            held.append(connection)
        for step in range(3):
            for connection in held[1::2]:
                connection.sendall(f"X-Trickle-{step}: 1\r\n".encode())
            for path, headers in (
                ("/healthz", {}),
                ("/readyz", {}),
                ("/metrics", served.bearer("read")),
            ):
                probe = http.client.HTTPConnection("127.0.0.1", served.port, timeout=3)
                try:
                    probe.request("GET", path, headers=headers)
                    assert probe.getresponse().status == 200
                finally:
                    probe.close()
    finally:
        for connection in held:
            connection.close()


# --- actions ----------------------------------------------------------------------------------


def test_an_action_asks_for_confirmation_then_sends(served, operator):
    ask = served.post("/instances/live/pause", {"payload": "maintenance"}, **operator)
    assert ask.status == 200 and "Pause live?" in ask.text
    assert 'name="confirmed" value="yes"' in ask.text and 'value="maintenance"' in ask.text
    assert pending_signal(served, "live") is None
    host = f"127.0.0.1:{served.port}"
    done = served.post(
        "/instances/live/pause",
        {"payload": "maintenance", "confirmed": "yes"},
        Origin=f"http://{host}",
        Host=host,
        **operator,
    )
    assert done.status == 303 and done.headers["location"] == "/instances/live?sent=pause"
    signal = pending_signal(served, "live")
    assert (signal.signal_type, signal.payload) == (records.SignalType.PAUSE, b"maintenance")
    served.logged("console: pause sent to instance 'live' (from 127.0.0.1)")
    page = served.get(done.headers["location"], **operator)
    assert "Pause sent" in page.text and "maintenance" in page.text


def test_a_script_acts_with_the_operate_token(served):
    done = served.post("/instances/done/retry", {"confirmed": "yes"}, **served.bearer("operate"))
    assert done.status == 409 and "Cannot retry" in done.text  # reached the action


def test_a_checkpoint_downloads_as_its_exact_bytes(served, operator):
    reply = served.get("/instances/live/checkpoints/step-1", **operator)
    assert reply.status == 200 and reply.body == b"\x00state"
    assert reply.headers["content-type"] == "application/octet-stream"
    assert reply.headers["content-disposition"].startswith('attachment; filename="live-step-1.bin"')


# --- bad input: each kind answered clearly, nothing changed ---------------------------------


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
def test_bad_input_is_answered_clearly(served, operator, method, path, fields, status, says):
    reply = served.send(method, path, fields, **operator)
    assert reply.status == status, reply.text
    assert says in html.unescape(reply.text)
    assert pending_signal(served, "done") is None


def test_a_body_too_large_or_unreadable_is_refused(served, operator):
    too_large = served.request(
        "POST",
        "/instances/live/cancel",
        body=b"x",
        headers={"Content-Length": str(2 * 1024 * 1024), "Content-Type": "text/plain", **operator},
    )
    assert too_large.status == 413
    answer = raw(
        served, b"POST /instances/live/cancel HTTP/1.1\r\nHost: a\r\nContent-Length: lots\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 400 ")
    not_utf8 = served.request(
        "POST",
        "/instances/live/cancel",
        body=b"confirmed=yes&payload=\xff",
        headers={"Content-Type": "application/x-www-form-urlencoded", **operator},
    )
    assert not_utf8.status == 400 and "the form cannot be read" in not_utf8.text
    assert served.request("PUT", "/instances/live", headers=operator).status == 405
    assert pending_signal(served, "done") is None


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
