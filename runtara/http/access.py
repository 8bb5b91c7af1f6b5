"""Who may use the HTTP endpoint: the credentials, the console's sessions and
the browser's rules.

Every request but the health probes and the console's static files and login
form carries a credential of the server (:mod:`runtara.credentials`): a
token as ``Authorization: Bearer TOKEN`` (scripts, Prometheus), or the cookie
of a console session (:mod:`runtara.http.sessions`) opened by logging in with
a token. The read credential lets its holder look (the metrics, the console's
pages and downloads), the operate one act as well (the console's actions).

A wrong token, given as a Bearer header or to the login form, counts as a
failed check of its client (:class:`runtara.credentials.FailedChecks`, by
:func:`runtara.http.clients.source_of`): a client that failed too often is
refused every token until its window ends, and the log gets a line when a
client starts failing and one when it is refused, not one per guess. A
session cookie is not a guess (nobody makes a valid one without a
credential): a client refused for its guesses keeps the sessions it has.

An action (a POST) made by a browser must come from the console's own pages:
``Sec-Fetch-Site`` must say so when sent, and ``Origin`` must be the
console's origin, which is ``--public-url`` when set (behind an HTTPS proxy)
and ``http://`` with the request's ``Host`` otherwise. The session cookie is
``HttpOnly``, ``SameSite=Strict`` and, when the public URL is https,
``Secure``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from urllib.parse import quote, urlsplit

import attrs

from runtara.credentials import Credentials, FailedChecks, Role
from runtara.http.clients import source_of
from runtara.http.messages import Request, Viewer
from runtara.http.sessions import COOKIE, Session, Sessions

logger = logging.getLogger(__name__)

HOME = "/instances"
"""Where a login goes when it was given no usable page to go back to."""


NO_CREDENTIAL = "no credential"
WRONG_CREDENTIAL = "wrong credential"
ENDED_SESSION = "the session has expired or is not valid"


@attrs.frozen
class Refusal:
    status: int
    """401 (no or a wrong credential) or 429 (too many wrong ones)."""
    reason: str
    retry_after: float | None = None


class Access:
    def __init__(
        self,
        credentials: Credentials,
        *,
        public_origin: str | None = None,
        failed_checks: FailedChecks | None = None,
        sessions: Sessions | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.credentials = credentials
        self.public_origin = public_origin
        self.failed_checks = failed_checks or FailedChecks()
        self.sessions = sessions or Sessions(credentials)
        self._monotonic = monotonic
        self._wall_clock = wall_clock

    # --- credentials --------------------------------------------------------------

    def identify(self, request: Request) -> Viewer | Refusal:
        """Who sent ``request``, or why it is refused."""
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and given.strip():
            checked = self._check(request.client, given.strip())
            return checked if isinstance(checked, Refusal) else Viewer(checked)
        session = self.session_of(request)
        if session is not None:
            return Viewer(session.role, session.id)
        if request.cookie(COOKIE):
            return Refusal(401, ENDED_SESSION)
        return Refusal(401, NO_CREDENTIAL)

    def session_of(self, request: Request) -> Session | None:
        return self.sessions.verify(request.cookie(COOKIE), self._wall_clock())

    def log_in(self, request: Request, token: str) -> tuple[Session, str] | Refusal:
        """A new session for the role ``token`` gives, with its cookie value; or why not."""
        checked = self._check(request.client, token)
        if isinstance(checked, Refusal):
            return checked
        return self.sessions.open(checked, self._wall_clock())

    def _check(self, client: str, token: str) -> Role | Refusal:
        source = source_of(client)
        now = self._monotonic()
        waiting = self.failed_checks.refused_for(source, now)
        if waiting is not None:
            return Refusal(
                429,
                f"too many wrong credentials from {source}: try again in {waiting:.0f}s",
                waiting,
            )
        role = self.credentials.role_of(token)
        if role is None:
            said = self.failed_checks.failed(source, now)
            if said is not None:
                logger.warning("HTTP: %s", said)
            return Refusal(401, WRONG_CREDENTIAL)
        return role

    # --- cookies ------------------------------------------------------------------

    @property
    def secure(self) -> bool:
        """Whether browsers reach the console over HTTPS (through a proxy)."""
        return self.public_origin is not None and self.public_origin.startswith("https://")

    def session_cookie(self, value: str) -> str:
        return self._cookie(f"{COOKIE}={value}", self.sessions.lifetime)

    def cleared_cookie(self) -> str:
        return self._cookie(f"{COOKIE}=", 0)

    def _cookie(self, content: str, max_age: int) -> str:
        flags = "; Secure" if self.secure else ""
        return f"{content}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{flags}"

    # --- the browser's rules ----------------------------------------------------------

    def origin(self, request: Request) -> str:
        """The console's origin as browsers see it."""
        return self.public_origin or f"http://{request.headers.get('host', '')}"

    def cross_site(self, request: Request) -> bool:
        """Whether a browser sent this request from another site's page."""
        if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return True
        origin = request.headers.get("origin")
        return origin is not None and origin.lower() != self.origin(request).lower()


def same_site_path(target: str) -> str:
    """Where to go after logging in: ``target`` when it is a path of this site
    (re-serialised), else :data:`HOME`. Refused: anything that does not start
    with exactly one ``/`` (a scheme, ``//host``), backslashes (browsers read
    them as ``/``) and control characters (browsers drop TAB, CR and LF from
    URLs, and CR and LF would end the header)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return HOME
    if any(ord(character) < 0x20 or ord(character) == 0x7F for character in target):
        return HOME
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return HOME
    path = quote(parts.path, safe="/%!$&'()*+,;=:@-._~")
    query = quote(parts.query, safe="/%!$&'()*+,;=:@-._~?")
    serialised = path + (f"?{query}" if query else "")
    return serialised if not serialised.startswith("//") else HOME
