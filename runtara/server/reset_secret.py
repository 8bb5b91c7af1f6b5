"""The server's stateless reset secret: 32 random bytes kept in its runs folder.

Every process of a server, and every server started again with the same runs
folder, must derive the same stateless reset tokens (see
:mod:`runtara.server.stateless_reset`), so the secret outlives the process.
The first process to start writes it; the others, and later starts, read it.

The file is created owner-only whatever the umask, without following a
symbolic link, and published complete: written under a name of its own, then
hard-linked to its final name, which fails if another process published first.
So a reader never sees half a secret, and processes starting together end up
with the same one.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path

from runtara import errors

FILE_NAME = "stateless-reset.key"
SECRET_SIZE = 32


class ResetSecretUnusable(errors.ListenFailed):
    """The secret cannot be read or created. The server's endpoints cannot be
    opened without it, so the server does not start, as when a port cannot be
    bound; the message names the file and what to do."""


def load_or_create(runs_dir: Path) -> bytes:
    """The secret in ``runs_dir`` (created 0700 if missing), written first if there is none."""
    path = runs_dir / FILE_NAME
    try:
        _make_folder(runs_dir)
        secret = _create(path)
    except FileExistsError:
        secret = None
    except OSError as error:
        raise ResetSecretUnusable(
            f"cannot create the stateless reset secret {path}: {error.strerror or error}"
        ) from None
    return secret if secret is not None else _read(path)


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True)
    except FileExistsError:
        return
    os.chmod(folder, 0o700)  # mkdir's mode is cut by the umask


def _create(path: Path) -> bytes:
    """Write a new secret and publish it at ``path``; FileExistsError if one is there."""
    secret = secrets.token_bytes(SECRET_SIZE)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # the umask may have cut the mode further
            os.write(fd, secret)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)
    return secret


def _read(path: Path) -> bytes:
    def unusable(
        reason: str, remedy: str = "delete it to have a new one made"
    ) -> ResetSecretUnusable:
        return ResetSecretUnusable(f"the stateless reset secret {path} {reason}; {remedy}")

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO must not hang us
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise unusable("is a symbolic link") from None
        raise unusable(f"cannot be read: {error.strerror or error}") from None
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise unusable("is not a regular file")
        if status.st_mode & 0o077:
            raise unusable(
                f"is open to others (mode {stat.S_IMODE(status.st_mode):o}): whoever "
                "knows it can end the server's connections",
                f"chmod 600 {path}",
            )
        secret = os.read(fd, SECRET_SIZE + 1)
    except OSError as error:
        raise unusable(f"cannot be read: {error.strerror or error}") from None
    finally:
        os.close(fd)
    if len(secret) != SECRET_SIZE:
        raise unusable(f"holds {len(secret)} bytes, not {SECRET_SIZE}")
    return secret
