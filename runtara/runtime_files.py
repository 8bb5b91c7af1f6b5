"""How the tools on this machine find the servers running here: runtime files.

A running server writes one file, ``server-<pid>.json``, into the runtime
folder of its user: its addresses, its certificate's fingerprint, where its
data is, and its two credentials. The folder is the user's alone (0700) and
the file too (0600), so only the server's user (and root) can read the
credentials; the tools of that user read them and so need no token. The file
goes when the server stops; one left by a server that died is recognised (its
process is gone, or the pid is another process's now) and removed by the next
reader.

The folder: ``RUNTARA_RUNTIME_DIR`` when set, else ``$XDG_RUNTIME_DIR/runtara-core``
(systemd's per-user folder), else ``~/.local/state/runtara-core``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import attrs

from runtara.launcher import processes

logger = logging.getLogger(__name__)

FOLDER = "RUNTARA_RUNTIME_DIR"
"""The variable naming the runtime folder (tests give each run its own)."""


@attrs.frozen(repr=False)
class RunningServer:
    """What a runtime file says of one running server."""

    pid: int
    started: int | None
    """The process's start time (clock ticks since boot): with the pid, it names one
    process, so a file whose pid was reused is not mistaken for a live server."""
    version: str
    instance_addr: str
    management_addr: str | None
    http_addr: str | None
    fingerprint: str
    """The SHA-256 fingerprint of the certificate the server presents."""
    storage: str
    """The store, as the server's start-up log names it (no password)."""
    runs_dir: str
    read_token: str
    operate_token: str

    def __repr__(self) -> str:
        return f"RunningServer(pid={self.pid}, instance_addr={self.instance_addr!r})"

    def describe(self) -> str:
        return f"pid {self.pid}, instance port {self.instance_addr}, storage {self.storage}"


def address_text(address: tuple[str, int] | None) -> str | None:
    """``host:port`` (``[host]:port`` for IPv6), as the tools' ``--server`` takes it."""
    if address is None:
        return None
    host, port = address[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def folder(environ: Mapping[str, str] = os.environ) -> Path:
    """The runtime folder of this user (see the module)."""
    if environ.get(FOLDER):
        return Path(environ[FOLDER])
    if environ.get("XDG_RUNTIME_DIR"):
        return Path(environ["XDG_RUNTIME_DIR"]) / "runtara-core"
    return Path.home() / ".local" / "state" / "runtara-core"


def write(server: RunningServer, environ: Mapping[str, str] = os.environ) -> Path:
    """Write the server's runtime file (atomically, owner-only) and return its path."""
    where = folder(environ)
    where.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(where, 0o700)
    path = where / f"server-{server.pid}.json"
    scratch = where / f".server-{server.pid}.json.tmp"
    with contextlib.suppress(FileNotFoundError):
        scratch.unlink()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(scratch, flags, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(attrs.asdict(server), out, indent=2, sort_keys=True)
    os.replace(scratch, path)
    return path


def remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def running(environ: Mapping[str, str] = os.environ) -> list[RunningServer]:
    """The servers of this user running on this machine, by pid; the files of
    servers that are gone are removed."""
    where = folder(environ)
    found = []
    for path in sorted(where.glob("server-*.json")) if where.is_dir() else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            server = RunningServer(**data)
        except (OSError, ValueError, TypeError) as error:
            logger.debug("runtime file %s unreadable: %s", path, error)
            continue
        if processes.alive(server.pid, server.started):
            found.append(server)
        else:
            remove(path)
    return found
