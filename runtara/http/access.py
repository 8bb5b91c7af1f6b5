"""Who may use the HTTP endpoint: the token rule and the browser's rules.

The rule is the management service's, with the same token
(``--management-token``): without a token the endpoint serves loopback only
(the configuration refuses another address) and answers anyone who reaches
it; with a token, every request must carry it, as ``Authorization: Bearer
TOKEN`` (scripts, Prometheus) or as the cookie the console's login form sets.
The health probes are the exception: they answer without the token, and tell
only whether the server is ready and why not.

Two browser rules protect the console whoever is logged in. A request whose
``Host`` is not a loopback name is refused when there is no token: a page
elsewhere cannot reach the console through a host name it rebinds to
127.0.0.1. An action (a POST) made by a browser must come from the console's
own pages (``Origin`` and ``Sec-Fetch-Site``), so another site cannot make
the operator's browser send a signal.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

from runtara.http.messages import Request

COOKIE = "runtara_console"
LOOPBACK_NAMES = ("localhost",)


class Access:
    def __init__(self, token: str | None) -> None:
        self.token = token

    @property
    def required(self) -> bool:
        return self.token is not None

    def session(self) -> str:
        """The cookie's value: derived from the token (the token itself never
        travels in a cookie; a new token ends every session)."""
        assert self.token is not None
        return hmac.new(self.token.encode(), b"runtara console session", hashlib.sha256).hexdigest()

    def is_token(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def refusal(self, request: Request) -> str | None:
        """Why ``request`` may not be answered (None: it may), for the log."""
        if self.token is None:
            return None
        authorization = request.headers.get("authorization", "")
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() == "bearer" and given:
            return None if self.is_token(given.strip()) else "wrong token"
        cookie = request.cookie(COOKIE)
        if cookie:
            return None if hmac.compare_digest(cookie, self.session()) else "expired session"
        return "missing token"

    def foreign_host(self, request: Request) -> str | None:
        """Without a token: the ``Host`` header when it names something else than
        loopback (a rebound DNS name), else None."""
        if self.token is not None:
            return None
        host = request.headers.get("host")
        if host is None:
            return None  # not a browser: browsers always send it
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        name = name.strip("[]").lower()
        if name in LOOPBACK_NAMES:
            return None
        try:
            if ipaddress.ip_address(name).is_loopback:
                return None
        except ValueError:
            pass
        return host

    @staticmethod
    def cross_site(request: Request) -> bool:
        """Whether a browser sent this request from another site's page."""
        if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return True
        origin = request.headers.get("origin")
        if origin is None:
            return False
        return origin != f"http://{request.headers.get('host', '')}"
