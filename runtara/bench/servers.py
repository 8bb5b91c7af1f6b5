"""Servers under test, each in its own process (with its children), and their memory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading

from runtara import credentials, errors

START_TIMEOUT = 60.0
READY = re.compile(r"listening on ([\d.]+):(\d+)")
"""How the baselines say where they listen."""


class ServerProcess:
    """A server started from ``argv`` that prints its address in a line matching ``ready``."""

    def __init__(self, argv: list[str], ready: re.Pattern, *, env: dict[str, str] | None = None):
        self.token = credentials.generate().operate
        """The operate credential of its management service, given to it by the bench."""
        self.process = subprocess.Popen(
            argv,
            env={**os.environ, **(env or {}), "RUNTARA_MANAGEMENT_TOKEN": self.token},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.log: list[str] = []
        self.address: tuple[str, int] | None = None
        self.management: tuple[str, int] | None = None
        self._ready = threading.Event()
        management = re.compile(r"management protocol on ([\d.]+):(\d+)")

        def read() -> None:
            for line in self.process.stdout:
                self.log.append(line.rstrip())
                if found := management.search(line):
                    self.management = (found.group(1), int(found.group(2)))
                if self.address is None and (found := ready.search(line)):
                    self.address = (found.group(1), int(found.group(2)))
                    self._ready.set()
            self._ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not self._ready.wait(START_TIMEOUT) or self.address is None:
            self.stop()
            said = [line for line in self.log if line.strip()]
            raise errors.OperationRefused(
                f"the server did not start: {said[-1] if said else 'it said nothing'}"
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()


def descendants(pid: int) -> list[int]:
    """The process's children, their children and so on (those alive now)."""
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        try:
            threads = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for thread in threads:
            try:
                with open(f"/proc/{parent}/task/{thread}/children") as children:
                    kids = [int(kid) for kid in children.read().split()]
            except OSError:
                continue
            found += kids
            pending += kids
    return found


def memory(pid: int, field: str = "VmHWM") -> int:
    """Bytes of resident memory (``VmRSS``) or its peak (``VmHWM``) of one process."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for process {pid}")


def tree_memory(pid: int, field: str = "VmHWM") -> int:
    """:func:`memory` summed over a process and its live descendants."""
    total = 0
    for member in [pid, *descendants(pid)]:
        try:
            total += memory(member, field)
        except OSError:
            pass  # it ended between the listing and the read
    return total


def runtara(args: list[str], *, host: str = "127.0.0.1", port: int = 0) -> ServerProcess:
    """runtara-core itself, with its management service on a free port."""
    return ServerProcess(
        [
            sys.executable,
            "-m",
            "runtara",
            "--host",
            host,
            "--port",
            str(port),
            "--management-addr",
            "127.0.0.1:0",
            "--log-level",
            "info",
            *args,
        ],
        re.compile(r"instance protocol on ([\d.]+):(\d+)"),
    )


def echo(
    max_concurrent: int, *, host: str = "127.0.0.1", port: int = 0, management: bool = False
) -> ServerProcess:
    """The ``echo`` baseline; ``management``: with the management service (its
    ``GetStats`` counts the requests served) on a free port."""
    return ServerProcess(
        [
            sys.executable,
            "-m",
            "runtara.bench.echo",
            "--host",
            host,
            "--port",
            str(port),
            "--max-concurrent",
            str(max_concurrent),
            *(["--management-addr", "127.0.0.1:0"] if management else []),
        ],
        READY,
    )


def naive() -> ServerProcess:
    return ServerProcess([sys.executable, "-m", "runtara.bench.naive", "--port", "0"], READY)
