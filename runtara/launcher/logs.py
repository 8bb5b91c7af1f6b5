"""Where a launched instance's output goes, kept to a bounded size.

Each instance has its own run folder under the runs folder (``--runs-dir``,
default ``runtara-runs`` in the working directory): ``stdout.log`` and
``stderr.log`` receive the process's output across attempts (each attempt
starts with a marker line), and ``input.json`` holds the input it was started
with. The process writes to the log files directly (opened for appending), so
nothing is lost if the server dies.

Only the server's user can read them, whatever the umask: run folders (and
the runs folder, when this module creates it) are 0700, log files 0600. No
name in a run folder is followed as a symbolic link, by writers or readers, so
a link planted there can neither redirect a write nor expose another file; a
run folder that is a link, or that another user owns, is refused.

:func:`cap` keeps a log near its limit while its process appends to it, by
moving the older part to ``<name>.1``. Readers locate bytes by their offset in
everything the log has received: ``<name>.moved`` holds how many bytes caps
have moved out of the live file so far. A cap and the readers exclude each
other with flock(2) on the live file (readers shared, a cap exclusive, and
only when no reader holds it), so a read never sees a log half moved.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import hashlib
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

STREAMS = ("stdout", "stderr")
_SAFE = re.compile(r"[^A-Za-z0-9._-]")
CHUNK = 1 << 20
"""Bytes copied or read at a time: what a cap or a read holds in memory."""
READ_WAIT = 5.0
"""Seconds a reader waits for a cap to finish; after that it reads without the lock."""
_CATCH_UP_ROUNDS = 8
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_ABSENT = (errno.ENOENT, errno.ELOOP, errno.ENOTDIR, errno.EISDIR)
"""Errors that mean "no log here": missing, a symbolic link, or the wrong kind of file."""
_COLLAPSE_RANGE = 0x08
"""FALLOC_FL_COLLAPSE_RANGE (linux/falloc.h)."""
_cannot_collapse: set[int] = set()
"""Devices (``st_dev``) whose file system refused to collapse a range."""


def run_folder(runs_dir: Path, instance_id: str) -> Path:
    """The instance's folder: its id made safe for a file name, plus a short hash
    of the exact id so that two ids never share a folder."""
    digest = hashlib.sha256(instance_id.encode("utf-8")).hexdigest()[:8]
    readable = _SAFE.sub("_", instance_id)[:80]
    return runs_dir / f"{readable}-{digest}"


def log_path(runs_dir: Path, instance_id: str, stream: str) -> Path:
    return run_folder(runs_dir, instance_id) / f"{stream}.log"


# --- writing ------------------------------------------------------------------


MARKER = re.compile(rb"--- attempt (\d+)(?: .*)? ---")
"""The line that starts an attempt in both logs (without its newline): the header that
:func:`open_for_attempt` writes, which starts with ``attempt N``."""


def open_for_attempt(folder: Path, header: str) -> dict[str, int]:
    """Open both log files for appending (creating the run folder), write the attempt's
    header line (``attempt N ...``: see :data:`MARKER`) to each, and return their file
    descriptors for the child.

    Raises OSError when the folder or a log file is a symbolic link, is not a folder or
    a regular file, or belongs to another user.
    """
    folder_fd = _private_folder(folder)
    descriptors: dict[str, int] = {}
    try:
        for stream in STREAMS:
            fd = _open_private(folder_fd, folder / f"{stream}.log")
            descriptors[stream] = fd
            os.write(fd, f"--- {header} ---\n".encode())
    except BaseException:
        for fd in descriptors.values():
            os.close(fd)
        raise
    finally:
        os.close(folder_fd)
    return descriptors


def make_run_folder(folder: Path) -> None:
    """Create the run folder as :func:`open_for_attempt` does (0700, with its runs folder
    when missing), for what is written there before the logs; OSError as it says."""
    os.close(_private_folder(folder))


def _private_folder(folder: Path) -> int:
    """The run folder opened (a descriptor for the ``dir_fd`` calls), created 0700 if
    missing, with its runs folder when that is missing too. One already there is made
    0700; it must be a real folder (not a symbolic link) that this user owns."""
    os.makedirs(folder.parent.parent, exist_ok=True)
    for path in (folder.parent, folder):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        os.chmod(path, 0o700)  # whatever the umask took off
    try:
        fd = os.open(folder, _FOLDER_FLAGS)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            message = "the run folder is a symbolic link, or not a folder"
            raise OSError(error.errno, message, str(folder)) from None
        raise
    try:
        _check_own(fd, folder, 0o700)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_private(folder: int, path: Path) -> int:
    """The log file ``path`` (in the opened ``folder``) opened for appending, created 0600
    if missing, never through a symbolic link."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path.name, flags, 0o600, dir_fd=folder)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise OSError(error.errno, "the log file is a symbolic link", str(path)) from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "the log file is not a regular file", str(path))
        _check_own(fd, path, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_own(fd: int, name: object, mode: int) -> None:
    """Refuse a file or folder of another user; give one of ours exactly ``mode``
    (the umask may have taken bits off, an older version may have left more)."""
    status = os.fstat(fd)
    if status.st_uid != os.geteuid():
        raise PermissionError(
            errno.EPERM, f"owned by uid {status.st_uid}, not by this server's user", str(name)
        )
    if stat.S_IMODE(status.st_mode) != mode:
        os.fchmod(fd, mode)


# --- capping ------------------------------------------------------------------


def cap(path: Path, limit: int) -> bool:
    """Keep the log at ``path`` near ``limit`` bytes while its process appends to it.

    When the live log holds more than ``limit`` bytes, its older part moves out: the
    bytes before a file-system block boundary chosen so that at least its newest
    ``limit // 2`` bytes stay (and less than one block more). ``<name>.1`` is replaced
    by the newest ``limit`` bytes of that older part; anything before them, and what
    ``.1`` held, is dropped. The part is copied in chunks of :data:`CHUNK` bytes,
    then removed from the front of the live file with fallocate's
    FALLOC_FL_COLLAPSE_RANGE (ext4, XFS, and overlayfs on them), which the kernel
    orders with the process's appends: no byte is lost or repeated.

    On a file system that cannot collapse a range (tmpfs, btrfs...), everything
    moves: the live log's newest ``limit`` bytes, and what arrives while they are
    copied, go to ``.1``, and the live file is emptied (ftruncate). What the process
    appends between the end of that copy and the emptying, an instant, is lost.

    True if the log was capped; False if it is under the limit (or so little over it
    that not one whole block would move), missing, not a regular file, or being read
    (the next call caps it). The replaced ``.1`` and ``.moved`` are new files renamed
    into place, so a symbolic link of either name is replaced, never followed.
    """
    try:
        if path.lstat().st_size <= limit:  # the usual answer, without opening anything
            return False
    except FileNotFoundError:
        return False
    with _opened(path, os.O_RDWR) as opened:
        if opened is None:
            return False
        folder, log = opened
        if not _lock(log, fcntl.LOCK_EX, wait=0) or os.fstat(log).st_size <= limit:
            return False
        removed = _move_out(log, folder, f"{path.name}.1", limit)
        if removed:
            total = str(_moved(folder, path.name) + removed).encode()
            _replace(folder, f"{path.name}.moved", lambda target: _write_all(target, total))
        return removed > 0


def _move_out(log: int, folder: int, rotated: str, limit: int) -> int:
    """Move the log's older part to ``rotated``; the number of bytes removed from its front."""
    status = os.fstat(log)
    if status.st_dev not in _cannot_collapse:
        block = status.st_blksize
        cut = (status.st_size - max(limit // 2, 1)) // block * block
        if cut <= 0:
            return 0
        _replace(folder, rotated, lambda target: _copy(log, target, max(0, cut - limit), cut))
        if _collapse(log, cut):
            return cut
        _cannot_collapse.add(status.st_dev)
    removed = 0

    def copy_then_empty(target: int) -> None:
        nonlocal removed
        end = os.fstat(log).st_size
        _copy(log, target, max(0, end - limit), end)
        for _ in range(_CATCH_UP_ROUNDS):  # what arrived meanwhile, until nothing does
            size = os.fstat(log).st_size
            if size == end:
                break
            _copy(log, target, end, size)
            end = size
        os.ftruncate(log, 0)
        removed = end

    _replace(folder, rotated, copy_then_empty)
    return removed


def _collapse(fd: int, length: int) -> bool:
    """Remove the first ``length`` bytes of the file, moving the rest to its start;
    False if the file system (or the C library) cannot."""
    fallocate = _fallocate()
    if fallocate is None:
        return False
    if fallocate(fd, _COLLAPSE_RANGE, 0, length) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
        return False
    raise OSError(error, f"fallocate(FALLOC_FL_COLLAPSE_RANGE): {os.strerror(error)}")


@functools.cache
def _fallocate() -> Callable[[int, int, int, int], int] | None:
    function = getattr(ctypes.CDLL(None, use_errno=True), "fallocate", None)
    if function is not None:
        function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    return function


def _copy(source: int, target: int, start: int, end: int) -> None:
    while start < end:
        data = os.pread(source, min(CHUNK, end - start), start)
        if not data:
            return
        _write_all(target, data)
        start += len(data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _replace(folder: int, name: str, fill: Callable[[int], None]) -> None:
    """Write ``name`` anew (0600): ``fill`` writes a scratch file, renamed over it."""
    scratch = f".{name}.new"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(scratch, dir_fd=folder)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(scratch, flags, 0o600, dir_fd=folder)
    try:
        os.fchmod(fd, 0o600)
        fill(fd)
    finally:
        os.close(fd)
    os.rename(scratch, name, src_dir_fd=folder, dst_dir_fd=folder)


# --- reading ------------------------------------------------------------------


def tail(path: Path, lines: int = 10, max_bytes: int = 8192) -> str:
    """The last lines of a log (its last ``max_bytes`` at most), or ""."""
    with _reading(path) as opened:
        if opened is None:
            return ""
        log, _ = opened
        size = os.fstat(log).st_size
        data = os.pread(log, max_bytes, max(0, size - max_bytes))
    text = data.decode("utf-8", "replace")
    kept = [line for line in text.splitlines() if line.strip() and not line.startswith("--- ")]
    return "\n".join(kept[-lines:])


def read_from(path: Path, offset: int, limit: int = CHUNK) -> tuple[bytes, int]:
    """Bytes of the log from ``offset`` (at most ``limit``) and the offset after them.

    Offsets count every byte the log has received, the ones caps moved out included,
    so reading on from the offset returned repeats nothing across a cap. Bytes a cap
    moved out before they were read are skipped (they are in ``<name>.1``): reading
    goes on from the oldest byte still in the log. An offset past the log's end (the
    log was deleted and started again) starts again at its beginning.
    """
    with _reading(path) as opened:
        if opened is None:
            return b"", 0
        log, moved = opened
        position = offset - moved
        if position > os.fstat(log).st_size:
            position = 0
        position = max(position, 0)
        data = os.pread(log, limit, position)
    return data, moved + position + len(data)


def read_all(path: Path) -> bytes:
    """The live log as it is at one moment (no cap runs during the read), without the
    older part in ``<name>.1``; b"" if there is no log."""
    with _reading(path) as opened:
        if opened is None:
            return b""
        log, _ = opened
        size = os.fstat(log).st_size
        chunks, position = [], 0
        while position < size:
            data = os.pread(log, min(CHUNK, size - position), position)
            if not data:
                break
            chunks.append(data)
            position += len(data)
    return b"".join(chunks)


def follow(path: Path, poll: float = 0.25) -> Iterator[bytes]:
    """Yield the log's content, then what is appended to it, until the caller stops."""
    offset = 0
    while True:
        data, offset = read_from(path, offset)
        if data:
            yield data
        else:
            time.sleep(poll)


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[tuple[int, int] | None]:
    """The log opened for reading and share-locked against a cap, with the number of
    bytes caps moved out of it; None if there is no log."""
    with _opened(path, os.O_RDONLY) as opened:
        if opened is None:
            yield None
            return
        folder, log = opened
        _lock(log, fcntl.LOCK_SH, wait=READ_WAIT)
        yield log, _moved(folder, path.name)


@contextlib.contextmanager
def _opened(path: Path, flags: int) -> Iterator[tuple[int, int] | None]:
    """The log's folder and the log opened (``flags``), neither through a symbolic
    link; None if either is missing or is not what it should be."""
    with contextlib.ExitStack() as closing:
        folder = _open_existing(path.parent, _FOLDER_FLAGS)
        log = None
        if folder is not None:
            closing.callback(os.close, folder)
            log = _open_existing(path.name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, folder)
        if log is not None:
            closing.callback(os.close, log)
            if not stat.S_ISREG(os.fstat(log).st_mode):
                log = None
        yield None if log is None else (folder, log)


def _open_existing(path: Path | str, flags: int, folder: int | None = None) -> int | None:
    try:
        return os.open(path, flags, dir_fd=folder)
    except OSError as error:
        if error.errno in _ABSENT:
            return None
        raise


def _moved(folder: int, name: str) -> int:
    """How many bytes caps have moved out of the log ``name`` (0 if never capped)."""
    fd = _open_existing(f"{name}.moved", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, folder)
    if fd is None:
        return 0
    try:
        text = os.read(fd, 32)
    finally:
        os.close(fd)
    try:
        return max(int(text), 0)
    except ValueError:
        return 0


def _lock(fd: int, kind: int, wait: float) -> bool:
    """flock ``fd`` (LOCK_SH or LOCK_EX), trying for up to ``wait`` seconds. True when
    held, or when the file system has no flock (then nothing is excluded)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        except OSError:
            return True
