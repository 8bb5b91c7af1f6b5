"""The journal of a server process's live connections, read by its successor.

A stateless reset only answers a packet, and a client that waits for a reply
has nothing to send: a Rust client (quinn) sends its next packet with its
keep-alive, up to 10 s after a crashed server came back. So each server
process writes down, for each established connection, the connection id its
client addresses it by and the client's address; a process that starts
again on the same port, with the same number, reads what its predecessor
wrote and resets those connections unasked (see
:mod:`runtara.server.stateless_reset`).

The journal is one file per port and process number in the runs folder, next
to the reset secret, so no two processes write the same file (two servers
sharing a runs folder on other ports included). One line is appended when a
connection is established (a single small write, never one per request);
every so often, when connections have closed since, the file is replaced by
a snapshot of the live ones, so it does not grow with churn. A clean stop
removes it: the clients were told by a CONNECTION_CLOSE.

Nothing is synced to disk: the journal has to outlive the process, not the
machine. The file is owner-only; it is never opened through a symbolic link,
and a file that is not a regular file of this user, or that others may
write, is not read: it names the addresses the server sends datagrams to.
A line that cannot be read is skipped, with one warning for the file.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import re
import secrets
import stat
from pathlib import Path
from typing import NamedTuple

from runtara.limits import MiB

logger = logging.getLogger(__name__)

REWRITE_EVERY = 60.0
"""Seconds between two snapshots (taken only when connections closed since the last)."""
LONGEST_JOURNAL = 16 * MiB
"""Bytes of a journal read at most: about 300,000 lines."""
_SERVICE = re.compile(r"[a-z]+")


class Entry(NamedTuple):
    """One connection: the service it belongs to, the connection id its client
    addresses the server by, and the client's address."""

    service: str
    connection_id: bytes
    address: tuple[str, int]

    def line(self) -> bytes:
        host, port = self.address
        return f"{self.service} {self.connection_id.hex()} {host} {port}\n".encode("ascii")


def path_for(runs_dir: Path, *, port: int, process: int) -> Path:
    return runs_dir / f"connections-{port}-{process}.journal"


class ConnectionJournal:
    """The journal of server process ``process`` on ``port``. Used from one thread."""

    def __init__(
        self, runs_dir: Path, *, port: int, process: int, connection_id_length: int
    ) -> None:
        self.path = path_for(runs_dir, port=port, process=process)
        self._process = process
        self._connection_id_length = connection_id_length
        self._live: dict[bytes, Entry] = {}
        self._stale = False
        """Connections closed since the last snapshot: the file lists the dead."""
        self._fd: int | None = None
        self._failing = False

    def take_over(self) -> list[Entry]:
        """The connections the predecessor journaled (none if it stopped cleanly),
        after which the journal starts afresh, empty."""
        entries = self._read()
        self._write_snapshot()
        return entries

    def opened(self, entry: Entry) -> None:
        self._live[entry.connection_id] = entry
        if self._fd is None:
            return
        try:
            os.write(self._fd, entry.line())
        except OSError as error:
            self._failed(error)

    def closed(self, connection_id: bytes) -> None:
        if self._live.pop(connection_id, None) is not None:
            self._stale = True

    def rewrite(self) -> None:
        """Replace the file by a snapshot of the live connections, if some closed."""
        if self._stale or self._fd is None:
            self._write_snapshot()

    def remove(self) -> None:
        """At a clean stop: no journal, nothing for a successor to reset."""
        self._close_file()
        try:
            self.path.unlink(missing_ok=True)
        except OSError as error:
            logger.warning("cannot remove the connection journal %s: %s", self.path, error)

    # --- the file -------------------------------------------------------------

    def _write_snapshot(self) -> None:
        scratch = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}")
        try:
            fd = os.open(
                scratch,
                os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
            )
        except OSError as error:
            self._failed(error)
            return
        try:
            os.fchmod(fd, 0o600)  # the umask may have cut the mode further
            _write_all(fd, b"".join(entry.line() for entry in self._live.values()))
            # Replaces the name, never what a symbolic link there points to.
            os.rename(scratch, self.path)
        except OSError as error:
            os.close(fd)
            scratch.unlink(missing_ok=True)
            self._failed(error)
            return
        self._close_file()
        self._fd = fd
        self._stale = False
        self._failing = False

    def _close_file(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _failed(self, error: OSError) -> None:
        # Serving goes on: without a journal, a restart tells clients only when
        # they next send.
        self._close_file()
        if not self._failing:
            self._failing = True
            logger.warning(
                "cannot write the connection journal %s (%s): after a crash, the next "
                "start cannot tell these connections' clients at once",
                self.path,
                error.strerror or error,
            )

    def _read(self) -> list[Entry]:
        data = self._read_bytes()
        if data is None:
            return []
        entries: dict[Entry, None] = {}
        unreadable = []
        # The last piece is what follows the last line end: empty, unless a
        # write was cut short.
        *lines, unterminated = data.split(b"\n")
        for number, line in enumerate(lines, start=1):
            entry = self._parse(line)
            if entry is not None:
                entries[entry] = None
            elif line.strip():
                unreadable.append(number)
        if unterminated:
            unreadable.append(len(lines) + 1)
        if unreadable:
            logger.warning(
                "skipped %d unreadable line(s) of the connection journal %s (the first: line %d)",
                len(unreadable),
                self.path,
                unreadable[0],
            )
        return list(entries)

    def _read_bytes(self) -> bytes | None:
        def refused(reason: str) -> None:
            logger.warning(
                "not using the connection journal %s: it %s; this start tells no client "
                "of the previous one at once",
                self.path,
                reason,
            )

        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as error:
            if error.errno == errno.ELOOP:
                return refused("is a symbolic link")
            return refused(f"cannot be read ({error.strerror or error})")
        try:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode):
                return refused("is not a regular file")
            if status.st_uid != os.geteuid():
                return refused("belongs to another user")
            if status.st_mode & 0o077:
                return refused(f"is open to others (mode {stat.S_IMODE(status.st_mode):o})")
            data = _read_at_most(fd, LONGEST_JOURNAL + 1)
        except OSError as error:
            return refused(f"cannot be read ({error.strerror or error})")
        finally:
            os.close(fd)
        if len(data) > LONGEST_JOURNAL:
            logger.warning(
                "the connection journal %s is longer than %d bytes: the rest is not read",
                self.path,
                LONGEST_JOURNAL,
            )
            data = data[: data.rfind(b"\n", 0, LONGEST_JOURNAL) + 1]
        return data

    def _parse(self, line: bytes) -> Entry | None:
        """The entry of one line, or None if it is not one this process wrote."""
        try:
            service, connection_id, host, port = line.decode("ascii").split()
            connection_id = bytes.fromhex(connection_id)
            host = str(ipaddress.ip_address(host))
        except ValueError:  # the wrong number of fields, not ASCII, not hex, not an address
            return None
        if (
            not _SERVICE.fullmatch(service)
            or len(connection_id) != self._connection_id_length
            or connection_id[0] != self._process  # the ids a process issues start with its number
            or not port.isdigit()
            or not 0 < int(port) < 65536
        ):
            return None
        return Entry(service, connection_id, (host, int(port)))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_at_most(fd: int, size: int) -> bytes:
    chunks = []
    while size > 0:
        chunk = os.read(fd, min(size, MiB))
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)
