"""The console's sessions: signed cookie values any server process can check.

Logging in with a credential opens a session with that credential's role. Its
cookie value carries the role, the expiry and a random id, and an HMAC of
them keyed by a secret derived from both credentials: every process of
``--processes N`` checks a session without shared memory, nobody can make
one without a credential, and a changed credential ends every session at
once. A session lasts :data:`LIFETIME`; each login opens a new one (a new
id), so a value planted before the login is never the one in use.

Logging out removes the cookie from that browser. It does not revoke the
value: a copy taken earlier stays valid until it expires (at most
:data:`LIFETIME` after the login) or a credential changes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

import attrs

from runtara.credentials import Credentials, Role

COOKIE = "runtara_console"
LIFETIME = 12 * 3600
"""Seconds a session lasts from its login."""


@attrs.frozen
class Session:
    role: Role
    expires: int
    """Unix time (seconds) from which the session is refused."""
    id: str


class Sessions:
    def __init__(self, credentials: Credentials, lifetime: int = LIFETIME) -> None:
        secret = b"runtara console sessions\x00%s\x00%s" % (
            credentials.operate.encode(),
            credentials.read.encode(),
        )
        self._key = hashlib.sha256(secret).digest()
        self.lifetime = lifetime

    def open(self, role: Role, now: float) -> tuple[Session, str]:
        """A new session for ``role`` from ``now`` (Unix time), with its cookie value."""
        session = Session(role, int(now) + self.lifetime, secrets.token_urlsafe(16))
        signed = f"{session.role.name.lower()}.{session.expires}.{session.id}"
        return session, f"{signed}.{self._mac(signed)}"

    def verify(self, value: str | None, now: float) -> Session | None:
        """The session a cookie value holds, or None: not one this server made,
        made with other credentials, or expired. Any text is answered, none raises."""
        if not value or not value.isascii():
            return None
        signed, _, mac = value.rpartition(".")
        if not hmac.compare_digest(mac.encode(), self._mac(signed).encode()):
            return None
        role_name, expires, session_id = signed.split(".")
        if now >= int(expires):
            return None
        return Session(Role[role_name.upper()], int(expires), session_id)

    def _mac(self, signed: str) -> str:
        digest = hmac.new(self._key, signed.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")
