"""One HTTP request and its response, as the endpoint's code sees them (no sockets)."""

from __future__ import annotations

import http.cookies
from collections.abc import Mapping
from urllib.parse import quote, unquote

import attrs

SECURITY_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
        "img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
)
"""Sent with every response: no outside resources, no framing, no caching."""


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
    """The peer's address, for the log."""

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


@attrs.frozen
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


def text(status: int, content: str) -> Response:
    return Response(status, content.encode())


def html(content: str, status: int = 200) -> Response:
    return Response(status, content.encode(), "text/html; charset=utf-8")


def redirect(location: str, *headers: tuple[str, str]) -> Response:
    """303 See Other: the browser follows with a GET (after a form's POST too)."""
    return Response(303, b"", headers=(("Location", location), *headers))


def download(data: bytes, filename: str, content_type: str = "application/octet-stream"):
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in filename)[:100] or "download"
    disposition = f"attachment; filename=\"{safe}\"; filename*=UTF-8''{quote(filename)}"
    return Response(200, data, content_type, (("Content-Disposition", disposition),))


def path_of(*segments: str) -> str:
    """A path from segments, each percent-encoded whole (an id holding ``/`` stays one segment)."""
    return "/" + "/".join(quote(segment, safe="") for segment in segments)
