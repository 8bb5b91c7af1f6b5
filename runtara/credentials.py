"""Who may do what: the two credentials of the management service and the HTTP endpoint.

A credential is a secret token. The *read* one lets its holder look: the
metrics, the health details, the console's pages, the inspection requests. The
*operate* one lets its holder act as well: start, stop, retry, signals,
pruning. A third kind, the *child* credential of one instance (an HMAC of the
operate token and its id, given to the processes the launcher starts for it),
lets those processes start and read that instance's children, nothing else.
A server always has both: the configured ones (from a file, the
environment or, with a warning, the command line), or ones it generates at
start and writes to its runtime file, readable by its user alone, where the
tools find them. Comparisons take the same time whatever the guess.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from pathlib import Path

import attrs

from runtara import errors

MIN_LENGTH = 16
"""Shortest token accepted from the configuration (characters)."""


class Role(enum.IntEnum):
    """What a credential allows; a higher role includes the lower ones."""

    READ = 1
    OPERATE = 2


@attrs.frozen(repr=False)
class Credentials:
    read: str
    operate: str

    def role_of(self, presented: str | bytes | None) -> Role | None:
        """The role the presented token gives, or None (compared in constant time;
        text that is not ASCII is simply wrong)."""
        if not presented:
            return None
        given = presented if isinstance(presented, bytes) else presented.encode("utf-8", "replace")
        operate = hmac.compare_digest(given, self.operate.encode())
        read = hmac.compare_digest(given, self.read.encode())
        if operate:
            return Role.OPERATE
        return Role.READ if read else None

    def child(self, instance_id: str) -> str:
        """The child credential of ``instance_id``, given to its processes as
        ``RUNTARA_CHILD_TOKEN``: it allows only starting and reading that instance's
        own children (StartChild, GetChild naming it as the parent)."""
        return child_token(self.operate, instance_id)

    def is_child_of(self, presented: str | bytes | None, parent_id: str) -> bool:
        """Whether ``presented`` is ``parent_id``'s child credential (constant time)."""
        if not presented or not parent_id:
            return False
        given = presented if isinstance(presented, bytes) else presented.encode("utf-8", "replace")
        return hmac.compare_digest(given, self.child(parent_id).encode())

    def __repr__(self) -> str:
        return "Credentials(read=..., operate=...)"  # never in a log or a traceback


def child_token(operate: str, instance_id: str) -> str:
    """hex(HMAC-SHA256(operate token, b"child:" + instance id))."""
    return hmac.new(
        operate.encode(), b"child:" + instance_id.encode("utf-8"), hashlib.sha256
    ).hexdigest()


def generate() -> Credentials:
    """Two fresh random tokens (256 bits each), in hex: never starting with ``-``,
    which a command line would take for an option (``--token -x...``)."""
    return Credentials(read=secrets.token_hex(32), operate=secrets.token_hex(32))


def problem(token: str) -> str | None:
    """Why ``token`` cannot be a credential, or None."""
    if len(token) < MIN_LENGTH:
        return f"a token needs at least {MIN_LENGTH} characters, this one has {len(token)}"
    if not token.isascii() or not token.isprintable() or " " in token:
        return "a token is printable ASCII without spaces"
    return None


def read_file(path: Path, flag: str) -> str:
    """The token a file holds (its first line, without blanks); ConfigError naming
    ``flag`` if it cannot be read or is no token."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise errors.ConfigError(f"{flag} {path}: cannot read it: {error}") from None
    wrong = problem(token)
    if wrong is not None:
        raise errors.ConfigError(f"{flag} {path}: {wrong}")
    return token


def configured(
    operate: str | None, operate_file: Path | None, read: str | None, read_file_: Path | None
) -> tuple[Credentials, list[str]]:
    """The server's credentials from its settings, each generated when not given;
    with the names of the generated ones. ConfigError for an unusable one."""
    tokens = {}
    generated = []
    fresh = generate()
    for role, value, path, flag in (
        ("operate", operate, operate_file, "--management-token"),
        ("read", read, read_file_, "--read-token"),
    ):
        if path is not None:
            value = read_file(path, f"{flag}-file")
        elif value is not None:
            wrong = problem(value)
            if wrong is not None:
                raise errors.ConfigError(f"{flag}: {wrong}")
        else:
            value = getattr(fresh, role)
            generated.append(role)
        tokens[role] = value
    if tokens["read"] == tokens["operate"]:
        raise errors.ConfigError("--read-token and --management-token must differ")
    return Credentials(read=tokens["read"], operate=tokens["operate"]), generated


@attrs.define
class _Tally:
    since: float
    failures: int = 0


class FailedChecks:
    """Failed credential checks by source (an IP address), without I/O: the caller
    passes the time.

    A source that failed ``limit`` checks within ``window`` seconds is refused,
    right credential or not, until that window ends; guessing a token is then
    ``limit`` tries a ``window``. What to log is returned, not logged: the first
    failure of a source's window, and the moment it is refused, so that a flood
    of guesses is a few lines.
    """

    def __init__(self, limit: int = 10, window: float = 60.0, sources: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self._sources = sources
        self._tallies: dict[str, _Tally] = {}

    def refused_for(self, source: str, now: float) -> float | None:
        """Seconds ``source`` is still refused for, or None."""
        tally = self._current(source, now)
        if tally is None or tally.failures < self.limit:
            return None
        return tally.since + self.window - now

    def failed(self, source: str, now: float) -> str | None:
        """Count a failed check; what to log about it, if anything."""
        tally = self._current(source, now)
        if tally is None:
            if len(self._tallies) >= self._sources:
                self._forget(now)
            tally = self._tallies[source] = _Tally(now)
        tally.failures += 1
        if tally.failures == 1:
            return f"a credential check from {source} failed"
        if tally.failures == self.limit:
            return (
                f"{source} failed {self.limit} credential checks within {self.window:g}s: "
                f"its requests are refused for the rest of that time"
            )
        return None

    def _current(self, source: str, now: float) -> _Tally | None:
        tally = self._tallies.get(source)
        if tally is not None and now - tally.since >= self.window:
            del self._tallies[source]
            return None
        return tally

    def _forget(self, now: float) -> None:
        for source, tally in list(self._tallies.items()):
            if now - tally.since >= self.window:
                del self._tallies[source]
        while len(self._tallies) >= self._sources:  # all recent: forget the oldest
            del self._tallies[min(self._tallies, key=lambda s: self._tallies[s].since)]
