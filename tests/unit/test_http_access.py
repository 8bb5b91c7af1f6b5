"""The HTTP endpoint's rules without sockets: sessions, credentials and their
failed checks, the browser's rules, where a login goes back to, the headers a
response may carry, and the console's public origin."""

from __future__ import annotations

import pytest

from runtara import config
from runtara.credentials import Credentials, FailedChecks, Role
from runtara.http import access, messages, sessions
from runtara.http.access import Access, Refusal
from runtara.http.clients import source_of
from runtara.http.messages import Request, Viewer

CREDENTIALS = Credentials(read="read-token-0123456789", operate="operate-token-0123456789")
NOW = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def request(client: str = "10.0.0.1", **headers: str) -> Request:
    return Request("GET", "/metrics", headers=headers, client=client)


def bearer(token: str, client: str = "10.0.0.1") -> Request:
    return request(client, authorization=f"Bearer {token}")


def with_cookie(value: str) -> Request:
    return request(cookie=f"{sessions.COOKIE}={value}")


# --- sessions -----------------------------------------------------------------------------


def test_a_session_holds_its_role_until_it_expires():
    signer = sessions.Sessions(CREDENTIALS)
    opened, value = signer.open(Role.READ, NOW)
    assert signer.verify(value, NOW) == opened
    assert opened.role is Role.READ and opened.expires == NOW + sessions.LIFETIME
    assert signer.verify(value, NOW + sessions.LIFETIME - 1) == opened
    assert signer.verify(value, NOW + sessions.LIFETIME) is None


def test_each_login_is_a_new_session():
    signer = sessions.Sessions(CREDENTIALS)
    (first, one), (second, other) = signer.open(Role.OPERATE, NOW), signer.open(Role.OPERATE, NOW)
    assert first.id != second.id and one != other


def test_any_process_with_the_same_credentials_verifies_a_session_and_others_do_not():
    _, value = sessions.Sessions(CREDENTIALS).open(Role.OPERATE, NOW)
    assert sessions.Sessions(CREDENTIALS).verify(value, NOW).role is Role.OPERATE
    for changed in (
        Credentials(read=CREDENTIALS.read, operate="another-operate-token"),
        Credentials(read="another-read-token-0", operate=CREDENTIALS.operate),
    ):
        assert sessions.Sessions(changed).verify(value, NOW) is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        "forged",
        "read.1900000000.abc.def",
        "caf\xe9",
        "\x00",
        "operate.1900000000.abc",
        "...",
        "read.x.y.z.w",
    ],
)
def test_a_value_that_is_no_session_is_none_never_an_error(value):
    assert sessions.Sessions(CREDENTIALS).verify(value, NOW) is None


def test_an_altered_session_is_refused():
    signer = sessions.Sessions(CREDENTIALS)
    _, value = signer.open(Role.READ, NOW)
    role, expires, session_id, mac = value.split(".")
    for altered in (
        f"operate.{expires}.{session_id}.{mac}",
        f"{role}.{int(expires) + 3600}.{session_id}.{mac}",
        f"{role}.{expires}.other.{mac}",
        f"{role}.{expires}.{session_id}.{mac[:-1]}",
    ):
        assert signer.verify(altered, NOW) is None


# --- credentials ------------------------------------------------------------------------------


def test_a_bearer_token_gives_its_role():
    rules = Access(CREDENTIALS)
    assert rules.identify(bearer(CREDENTIALS.read)) == Viewer(Role.READ)
    assert rules.identify(bearer(CREDENTIALS.operate)) == Viewer(Role.OPERATE)
    assert rules.identify(request()) == Refusal(401, access.NO_CREDENTIAL)
    assert rules.identify(request(authorization="Basic abc")) == Refusal(401, access.NO_CREDENTIAL)
    assert rules.identify(bearer("caf\xe9")) == Refusal(401, access.WRONG_CREDENTIAL)


def test_a_session_cookie_gives_its_role_and_a_bad_one_is_an_ended_session():
    wall = Clock(NOW)
    rules = Access(CREDENTIALS, wall_clock=wall)
    opened, value = rules.log_in(request(), CREDENTIALS.read)
    assert rules.identify(with_cookie(value)) == Viewer(Role.READ, opened.id)
    wall.now += sessions.LIFETIME
    assert rules.identify(with_cookie(value)) == Refusal(401, access.ENDED_SESSION)
    assert rules.identify(request(cookie='runtara_console="\\351"')) == Refusal(
        401, access.ENDED_SESSION
    )


def test_after_the_limit_of_wrong_tokens_a_client_is_refused_every_token_for_the_window(caplog):
    monotonic = Clock()
    rules = Access(CREDENTIALS, failed_checks=FailedChecks(limit=3, window=60), monotonic=monotonic)
    for _ in range(3):
        assert rules.identify(bearer("wrong")).status == 401
    refused = rules.identify(bearer(CREDENTIALS.operate))
    assert refused.status == 429 and refused.retry_after == 60
    assert rules.log_in(bearer("", "10.0.0.1"), CREDENTIALS.operate).status == 429
    assert rules.identify(bearer(CREDENTIALS.operate, "10.0.0.2")) == Viewer(Role.OPERATE)
    monotonic.now = 60
    assert rules.identify(bearer(CREDENTIALS.operate)) == Viewer(Role.OPERATE)
    said = [record.getMessage() for record in caplog.records]
    assert said == [
        "HTTP: a credential check from 10.0.0.1 failed",
        "HTTP: 10.0.0.1 failed 3 credential checks within 60s: its requests are refused "
        "for the rest of that time",
    ]


def test_wrong_tokens_from_one_ipv6_network_count_together():
    rules = Access(CREDENTIALS, failed_checks=FailedChecks(limit=2, window=60))
    rules.identify(bearer("wrong", "2001:db8:1:2::1"))
    rules.identify(bearer("wrong", "2001:db8:1:2::ffff"))
    assert rules.identify(bearer(CREDENTIALS.read, "2001:db8:1:2::3")).status == 429
    assert rules.identify(bearer(CREDENTIALS.read, "2001:db8:1:3::1")) == Viewer(Role.READ)


@pytest.mark.parametrize(
    ("address", "source"),
    [
        ("10.1.2.3", "10.1.2.3"),
        ("::ffff:10.1.2.3", "10.1.2.3"),
        ("2001:db8:0:1:aaaa:bbbb:cccc:dddd", "2001:db8:0:1::/64"),
        ("::1", "::1"),
        ("", ""),
    ],
)
def test_the_client_an_address_counts_as(address, source):
    assert source_of(address) == source


# --- the browser's rules and cookies -----------------------------------------------------------


def test_an_action_must_come_from_the_consoles_origin():
    plain = Access(CREDENTIALS)
    proxied = Access(CREDENTIALS, public_origin="https://console.example")
    host = {"host": "127.0.0.1:8080"}
    assert not plain.cross_site(request(**host))
    assert not plain.cross_site(request(**host, origin="http://127.0.0.1:8080"))
    assert plain.cross_site(request(**host, origin="https://127.0.0.1:8080"))
    assert plain.cross_site(request(**host, **{"sec-fetch-site": "same-site"}))
    assert not proxied.cross_site(request(**host, origin="https://console.example"))
    assert not proxied.cross_site(request(**host, origin="HTTPS://Console.Example"))
    assert proxied.cross_site(request(**host, origin="http://127.0.0.1:8080"))


def test_the_cookie_is_secure_when_the_console_is_served_over_https():
    plain = Access(CREDENTIALS).session_cookie("v")
    assert plain == "runtara_console=v; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200"
    proxied = Access(CREDENTIALS, public_origin="https://console.example")
    assert proxied.session_cookie("v").endswith("; Secure")
    assert proxied.cleared_cookie() == (
        "runtara_console=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0; Secure"
    )


@pytest.mark.parametrize(
    ("target", "location"),
    [
        ("/instances/x?events=2", "/instances/x?events=2"),
        ("/instances/a%2Fb", "/instances/a%2Fb"),
        ("/instances/a b\"<'", "/instances/a%20b%22%3C'"),
        ("/", "/"),
        ("//evil.example", "/instances"),
        ("///evil.example", "/instances"),
        ("/\\evil.example", "/instances"),
        ("/\t/evil.example", "/instances"),
        ("/\r\nSet-Cookie: x=y", "/instances"),
        ("/\x00", "/instances"),
        ("/\x1b", "/instances"),
        ("http://evil.example", "/instances"),
        ("evil.example", "/instances"),
        ("", "/instances"),
    ],
)
def test_a_login_goes_back_only_to_a_path_of_this_site(target, location):
    assert access.same_site_path(target) == location


# --- responses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        ("Location", "/\r\nX-Injected: yes"),
        ("Location", "/\nX"),
        ("Location", "/\rX"),
        ("Location", "/\x00"),
        ("Location", "/caf\xe9"),
        ("Bad Name", "x"),
        ("X:Y", "x"),
    ],
)
def test_a_response_never_carries_a_header_that_could_split_it(header):
    with pytest.raises(ValueError):
        messages.Response(303, headers=(header,))
    with pytest.raises(ValueError):
        messages.Response(200, content_type="text/plain\r\nX: y")


def test_a_download_of_a_name_that_is_not_ascii_has_a_safe_header():
    reply = messages.download(b"x", "caf\xe9\r\n.bin")
    (disposition,) = (value for name, value in reply.headers if name == "Content-Disposition")
    assert (
        disposition == "attachment; filename=\"caf___.bin\"; filename*=UTF-8''caf%C3%A9%0D%0A.bin"
    )


# --- the console's public origin ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "origin"),
    [
        ("https://Console.Example", "https://console.example"),
        ("https://console.example:443/", "https://console.example"),
        ("http://console.example:80", "http://console.example"),
        ("https://console.example:8443", "https://console.example:8443"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_the_public_url_is_kept_as_browsers_write_an_origin(raw, origin):
    assert config.origin(raw) == origin


@pytest.mark.parametrize(
    "raw",
    [
        "console.example",
        "ftp://console.example",
        "https://",
        "https://console.example/console",
        "https://console.example/?a=b",
        "https://console.example/#top",
        "https://user@console.example",
        "https://console.example:99999",
        "https://consöle.example",
    ],
)
def test_a_public_url_that_is_no_origin_is_refused(raw):
    with pytest.raises(ValueError):
        config.origin(raw)
