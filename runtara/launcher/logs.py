"""Where a launched instance's output goes, kept to a bounded size.

Each instance has its own run folder under the runs folder
(``--runs-dir``, default ``runs`` next to the SQLite database or in the
working directory): ``stdout.log`` and ``stderr.log`` receive the process's
output across attempts (each attempt starts with a marker line), and
``input.json`` holds the input it was started with. The process writes to the
log files directly (opened for appending), so nothing is lost if the server
dies; :func:`cap` keeps each under its size by moving the older half into a
``.1`` file.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

STREAMS = ("stdout", "stderr")
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def run_folder(runs_dir: Path, instance_id: str) -> Path:
    """The instance's folder: its id made safe for a file name, plus a short hash
    of the exact id so that two ids never share a folder."""
    digest = hashlib.sha256(instance_id.encode("utf-8")).hexdigest()[:8]
    readable = _SAFE.sub("_", instance_id)[:80]
    return runs_dir / f"{readable}-{digest}"


def log_path(runs_dir: Path, instance_id: str, stream: str) -> Path:
    return run_folder(runs_dir, instance_id) / f"{stream}.log"


def open_for_attempt(folder: Path, header: str) -> dict[str, int]:
    """Open both log files for appending (creating the folder), write the attempt's
    header line to each, and return their file descriptors for the child."""
    folder.mkdir(parents=True, exist_ok=True)
    descriptors = {}
    for stream in STREAMS:
        fd = os.open(folder / f"{stream}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.write(fd, f"--- {header} ---\n".encode())
        descriptors[stream] = fd
    return descriptors


def cap(path: Path, limit: int) -> bool:
    """Keep ``path`` under ``limit`` bytes: when it is over, its content moves to
    ``<name>.1`` (replacing an older one) and it is emptied in place, which a
    process appending to it carries on writing to. True if it was capped."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if size <= limit:
        return False
    rotated = path.with_name(path.name + ".1")
    with open(path, "rb") as source, open(rotated, "wb") as target:
        target.write(source.read(size))
    os.truncate(path, 0)
    return True


def tail(path: Path, lines: int = 10, max_bytes: int = 8192) -> str:
    """The last lines of a log (its last ``max_bytes`` at most), or ""."""
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            size = log.tell()
            log.seek(max(0, size - max_bytes))
            data = log.read()
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", "replace")
    kept = [line for line in text.splitlines() if line.strip() and not line.startswith("--- ")]
    return "\n".join(kept[-lines:])


def read_from(path: Path, offset: int, limit: int = 1 << 20) -> tuple[bytes, int]:
    """Bytes of the log from ``offset`` (at most ``limit``) and the offset after them.

    If the log was capped below ``offset`` since, reading starts again at 0.
    """
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            if log.tell() < offset:
                offset = 0
            log.seek(offset)
            data = log.read(limit)
    except FileNotFoundError:
        return b"", 0
    return data, offset + len(data)


def follow(path: Path, poll: float = 0.25) -> Iterator[bytes]:
    """Yield the log's content, then what is appended to it, until the caller stops."""
    offset = 0
    while True:
        data, offset = read_from(path, offset)
        if data:
            yield data
        else:
            time.sleep(poll)
