"""Servers under test, each in its own process, with their CPU time and memory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ServerProcess:
    """A server started from ``argv`` that prints its address in a line matching ``ready``."""

    def __init__(self, argv: list[str], ready: str, *, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            argv,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.log: list[str] = []
        self.address: tuple[str, int] | None = None
        self.management: tuple[str, int] | None = None
        self._ready = threading.Event()
        pattern = re.compile(ready)
        management = re.compile(r"management protocol on ([\d.]+):(\d+)")

        def read() -> None:
            for line in self.process.stdout:
                self.log.append(line.rstrip())
                if found := management.search(line):
                    self.management = (found.group(1), int(found.group(2)))
                if found := pattern.search(line):
                    self.address = (found.group(1), int(found.group(2)))
                    self._ready.set()
            self._ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not self._ready.wait(60) or self.address is None:
            self.stop()
            raise RuntimeError("server did not start:\n" + "\n".join(self.log[-20:]))

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


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, all threads."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory(pid: int, field: str = "VmHWM") -> int:
    """Bytes of resident memory (``VmRSS``) or its peak (``VmHWM``)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for process {pid}")


def runtara(args: list[str]) -> ServerProcess:
    return ServerProcess(
        [
            sys.executable,
            "-m",
            "runtara",
            "--port",
            "0",
            "--management-addr",
            "127.0.0.1:0",
            "--log-level",
            "info",
            *args,
        ],
        r"instance protocol on ([\d.]+):(\d+)",
    )


def echo(max_concurrent: int) -> ServerProcess:
    return ServerProcess(
        [
            sys.executable,
            "-m",
            "runtara.bench.echo",
            "--port",
            "0",
            "--max-concurrent",
            str(max_concurrent),
        ],
        r"listening on ([\d.]+):(\d+)",
    )


def naive() -> ServerProcess:
    return ServerProcess(
        [sys.executable, "-m", "runtara.bench.naive", "--port", "0"],
        r"listening on ([\d.]+):(\d+)",
    )
