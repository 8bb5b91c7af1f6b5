"""One attempt of an instance: its process, how it ended, and how to stop it.

A process is started in its own session (so that it outlives a server that is
killed, and a signal to the server does not reach it), with the server's
environment plus the specification's variables plus the ones upstream's
environment gives an instance. Its output goes to the instance's log files.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import attrs

from runtara.launcher import logs
from runtara.launcher.spec import LaunchSpec

LOST_SERVER = 75
"""The exit code of a process that gave up waiting for its server (the Python SDK's,
see runtara.sdk.runner; EX_TEMPFAIL): a failure of the transport, not of the workflow."""


@attrs.frozen
class Exit:
    """How a process ended."""

    code: int | None
    """Its exit status, or None when a signal ended it."""
    signal: int | None = None

    def describe(self) -> str:
        if self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = f"signal {self.signal}"
            return f"killed by {name}"
        if self.code is None:
            return "ended in an unknown way"
        if self.code == LOST_SERVER:
            return f"lost its server (exit code {LOST_SERVER})"
        return f"exited with code {self.code}"

    @classmethod
    def from_returncode(cls, returncode: int) -> Exit:
        """Popen's return code: negative for a signal."""
        if returncode < 0:
            return cls(None, -returncode)
        return cls(returncode)


def start_time(pid: int) -> int | None:
    """When the process started, in clock ticks since boot (None if it is gone):
    together with the pid it names one process, even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def alive(pid: int, started: int | None) -> bool:
    """The process ``pid`` that started at ``started`` still runs (and is not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z" and (started is None or int(fields[19]) == started)


class Attempt:
    """A process this server started for an instance."""

    def __init__(self, process: subprocess.Popen, attempt: int) -> None:
        self.process = process
        self.attempt = attempt
        self.pid = process.pid
        self.started = start_time(process.pid)
        self.terminated_at: float | None = None
        """When SIGTERM was sent (stopping it), if it was."""

    def poll(self) -> Exit | None:
        code = self.process.poll()
        return None if code is None else Exit.from_returncode(code)

    def signal(self, number: int) -> None:
        try:
            os.killpg(self.pid, number)
        except ProcessLookupError:
            pass


def spawn(
    spec: LaunchSpec,
    environment: dict[str, str],
    folder: Path,
    header: str,
    attempt: int,
) -> Attempt:
    """Start the process; raises OSError (missing program, not executable, bad folder)."""
    descriptors = logs.open_for_attempt(folder, header)
    try:
        process = subprocess.Popen(
            list(spec.command),
            cwd=spec.cwd,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=descriptors["stdout"],
            stderr=descriptors["stderr"],
            start_new_session=True,
            close_fds=True,
        )
    except OSError as error:
        os.write(descriptors["stderr"], f"runtara-core: cannot start: {error}\n".encode())
        raise
    finally:
        for fd in descriptors.values():
            os.close(fd)
    return Attempt(process, attempt)
