"""The console's log download while the instance writes and the launcher caps the log."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from runtara.admin.local import LocalAdmin
from runtara.config import StorageConfig
from runtara.http.console import Console
from runtara.http.messages import Request
from runtara.launcher import logs
from runtara.launcher.spec import LaunchSpec
from runtara.storage import selection
from tests.support import sqlite_url

HEADER = b"--- attempt 1 ---\n"
WIDTH = 100
LINES = 160_000
LIMIT = 3 << 20
WRITER = f"""
import os, time
for start in range(0, {LINES}, 100):
    os.write(1, b"".join(
        b"%08d" % n + b"." * {WIDTH - 9} + b"\\n" for n in range(start, start + 100)
    ))
    time.sleep(0.0005)
"""
"""Appends numbered lines of WIDTH bytes, 100 at a time, for about a second (16 MB)."""


def line(number: int) -> bytes:
    return b"%08d" % number + b"." * (WIDTH - 9) + b"\n"


def where(download: bytes) -> int:
    """Where ``download`` starts in everything the log received (it starts with the
    header or anywhere in a line: a cap cuts the log at a block, not at a line)."""
    if download.startswith(HEADER):
        return 0
    first = download.index(b"\n") + 1
    return len(HEADER) + WIDTH * int(download[first : first + 8]) - first


def test_a_log_capped_during_downloads_gives_each_one_piece_of_it_once(tmp_path):
    storage = selection.open_driver(StorageConfig(database_url=sqlite_url(tmp_path)), workers=2)
    storage.migrate()
    runs = tmp_path / "runs"
    admin = LocalAdmin(storage, runs_dir=runs)
    admin.start_instance("logged", "tenant", LaunchSpec(command=("true",)), None)
    console = Console(admin, runs_dir=runs)
    request = Request("GET", "/instances/logged/logs/stdout")
    expected = HEADER + b"".join(line(number) for number in range(LINES))
    path = logs.log_path(runs, "logged", "stdout")

    descriptors = logs.open_for_attempt(path.parent, "attempt 1")
    try:
        writer = subprocess.Popen([sys.executable, "-c", WRITER], stdout=descriptors["stdout"])
    finally:
        for fd in descriptors.values():
            os.close(fd)
    caps = 0

    def capping() -> None:
        nonlocal caps
        while writer.poll() is None:
            caps += logs.cap(path, LIMIT)

    capper = threading.Thread(target=capping)
    capper.start()
    downloads = 0
    try:
        while writer.poll() is None:
            response = console.log(request, "logged", "stdout")
            assert response.status == 200
            body = response.body
            start = where(body)
            assert body == expected[start : start + len(body)], "not one piece of the log"
            downloads += 1
        capper.join()
        assert writer.returncode == 0
        assert caps >= 3 and downloads >= 5
        final = console.log(request, "logged", "stdout").body
        assert final == expected[len(expected) - len(final) :] and len(final) >= LIMIT // 2
    finally:
        writer.kill()
        capper.join()
        storage.close()
