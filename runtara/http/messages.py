"""One HTTP request and its response, as the endpoint's code sees them (no sockets).

A response is checked as it is built: a header whose name is not an HTTP token
or whose value holds a control character (CR and LF above all, which would
end the header and start another) is a ValueError there, whatever text the
value came from.
"""

from __future__ import annotations

import http.cookies
import re
from collections.abc import Mapping
from urllib.parse import quote, unquote

import attrs

from runtara.credentials import Role

SECURITY_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
)
"""Sent with every response (a response's own header of the same name replaces
one): nothing from elsewhere and no inline script or style, no framing, no caching."""

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e]*")


@attrs.frozen
class Viewer:
    """Who sent a request that carries a credential."""

    role: Role
    session: str | None = None
    """The console session's id, or None for a request with a Bearer token."""

    @property
    def may_act(self) -> bool:
        return self.role >= Role.OPERATE


@attrs.frozen
class Request:
    method: str
    """``GET``, ``POST`` ... (``HEAD`` arrives as ``GET``; the server drops the body)."""
    path: str
    """The path as sent, still percent-encoded, without the query."""
    query: Mapping[str, str] = attrs.field(factory=dict)
    """The first value of each query parameter."""
    headers: Mapping[str, str] = attrs.field(factory=dict)
    """By lower-case name."""
    form: Mapping[str, str] = attrs.field(factory=dict)
    """The first value of each field of a form-encoded body."""
    client: str = ""
    """The peer's IP address."""
    viewer: Viewer | None = None
    """Who sent it, once the credential it carries was checked."""

    @property
    def segments(self) -> list[str]:
        """The path's segments, each decoded (``/instances/a%2Fb`` gives
        ``["instances", "a/b"]``)."""
        return [unquote(part) for part in self.path.strip("/").split("/") if part]

    def cookie(self, name: str) -> str | None:
        jar = http.cookies.SimpleCookie()
        try:
            jar.load(self.headers.get("cookie", ""))
        except http.cookies.CookieError:
            return None
        morsel = jar.get(name)
        return None if morsel is None else morsel.value


def _checked_headers(
    response: Response, attribute: attrs.Attribute, headers: tuple[tuple[str, str], ...]
) -> None:
    for name, value in (("Content-Type", response.content_type), *headers):
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"{name!r} is not a header name")
        if not _FIELD_VALUE.fullmatch(value):
            raise ValueError(f"the value of header {name} holds a control or non-ASCII character")


@attrs.frozen
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = attrs.field(default=(), validator=_checked_headers)


def text(status: int, content: str, *headers: tuple[str, str]) -> Response:
    return Response(status, content.encode(), headers=headers)


def html(content: str, status: int = 200, *headers: tuple[str, str]) -> Response:
    return Response(status, content.encode(), "text/html; charset=utf-8", headers)


def redirect(location: str, *headers: tuple[str, str]) -> Response:
    """303 See Other: the browser follows with a GET (after a form's POST too)."""
    return Response(303, b"", headers=(("Location", location), *headers))


def download(data: bytes, filename: str, content_type: str = "application/octet-stream"):
    safe = (
        "".join(c if c.isascii() and c.isalnum() or c in "._-" else "_" for c in filename)[:100]
        or "download"
    )
    disposition = f"attachment; filename=\"{safe}\"; filename*=UTF-8''{quote(filename)}"
    return Response(200, data, content_type, (("Content-Disposition", disposition),))


def path_of(*segments: str) -> str:
    """A path from segments, each percent-encoded whole (an id holding ``/`` stays one segment)."""
    return "/" + "/".join(quote(segment, safe="") for segment in segments)
