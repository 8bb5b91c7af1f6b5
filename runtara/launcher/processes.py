"""One attempt of an instance: its process, and how it ended.

A process is started in its own session (so that it outlives a server that is
killed, and a signal to the server does not reach it), with the server's
environment plus the specification's variables plus the ones upstream's
environment gives an instance, and the folder of the server's own Python first
on its PATH when that is a virtual environment's (:func:`server_bin_first`). Its
output goes to the instance's log files.

Given a parent cgroup, the process starts inside a new group of its own under
it before its command runs (:mod:`runtara.launcher.held_exec`), so that nothing
it starts can leave the group.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import attrs

from runtara.launcher import cgroups, logs
from runtara.launcher.spec import LaunchSpec

logger = logging.getLogger(__name__)

HELD_EXEC = str(Path(__file__).with_name("held_exec.py"))


def server_bin_first(path: str | None) -> str:
    """``path`` (a PATH value) with the folder of the server's Python first when the
    server runs from a virtual environment, so that a ``python`` or ``runtara-*`` in a
    command is that environment's (which has runtara), even when it was not activated.
    The folder is the one ``sys.executable`` names, symbolic links not followed: the
    environment's ``bin``, which holds only its own programs. A Python outside a
    virtual environment lives in a folder of every program (``/usr/bin``): putting
    that first would change which of all of them runs, so ``path`` is left as it is;
    so it is when the folder is already first."""
    path = os.defpath if path is None else path
    if not sys.executable or sys.prefix == sys.base_prefix:
        return path
    folder = os.path.dirname(sys.executable)
    if path.split(os.pathsep)[0] == folder:
        return path
    return f"{folder}{os.pathsep}{path}"


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

    def __init__(self, process: subprocess.Popen, attempt: int, group: Path | None) -> None:
        self.process = process
        self.attempt = attempt
        self.pid = process.pid
        self.started = start_time(process.pid)
        self.group = group
        """Its cgroup, when it was started in one."""

    def poll(self) -> Exit | None:
        code = self.process.poll()
        return None if code is None else Exit.from_returncode(code)


def spawn(
    spec: LaunchSpec,
    environment: dict[str, str],
    folder: Path,
    header: str,
    attempt: int,
    cgroup_parent: Path | None = None,
    umask: int = -1,
) -> Attempt:
    """Start the process (in a group of its own under ``cgroup_parent``, if given),
    with ``umask`` (-1: the server's; the server keeps its own files private, not
    the workflow's); raises OSError (missing program, not executable, bad folder)."""
    descriptors = logs.open_for_attempt(folder, header)
    try:
        if cgroup_parent is None:
            process = _popen(list(spec.command), spec, environment, descriptors, umask=umask)
            group = None
        else:
            process, group = _start_in_group(
                spec, environment, descriptors, cgroup_parent, (folder.name, attempt), umask
            )
    except OSError as error:
        os.write(descriptors["stderr"], f"runtara-core: cannot start: {error}\n".encode())
        raise
    finally:
        for fd in descriptors.values():
            os.close(fd)
    return Attempt(process, attempt, group)


def _popen(
    command: list[str],
    spec: LaunchSpec,
    environment: dict[str, str],
    descriptors: dict[str, int],
    keep: tuple[int, ...] = (),
    *,
    umask: int = -1,
) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        cwd=spec.cwd,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=descriptors["stdout"],
        stderr=descriptors["stderr"],
        start_new_session=True,
        close_fds=True,
        pass_fds=keep,
        umask=umask,
    )


def _start_in_group(
    spec: LaunchSpec,
    environment: dict[str, str],
    descriptors: dict[str, int],
    parent: Path,
    naming: tuple[str, int],
    umask: int,
) -> tuple[subprocess.Popen, Path | None]:
    """Start the command held before its exec, move it into a new group, then let
    it run. Moving the process from here before it can fork is what makes this
    race-free; a group that cannot be made leaves the process outside any (it is
    then ended as its session, as without cgroups)."""
    go_read, go_write = os.pipe()
    status_read, status_write = os.pipe()
    try:
        held = [sys.executable, "-I", "-S", HELD_EXEC, str(go_read), str(status_write)]
        process = _popen(
            held + list(spec.command),
            spec,
            environment,
            descriptors,
            (go_read, status_write),
            umask=umask,
        )
    except BaseException:
        os.close(go_write)
        os.close(status_read)
        raise
    finally:
        os.close(go_read)
        os.close(status_write)
    group: Path | None = None
    try:
        group = cgroups.create(parent, cgroups.group_name(*naming, process.pid))
        cgroups.join(group, process.pid)
    except OSError as error:
        logger.warning("pid %d runs without a cgroup of its own: %s", process.pid, error)
        if group is not None:
            cgroups.remove(group)
            group = None
    try:
        os.write(go_write, b"1")
    except BrokenPipeError:
        pass  # it died held: an exit like any other, which the launcher records
    finally:
        os.close(go_write)
    with os.fdopen(status_read, "rb") as status:
        failed = status.read()
    if failed:
        process.wait()
        if group is not None:
            cgroups.remove(group)
        number = int(failed)
        raise OSError(number, os.strerror(number), spec.command[0])
    return process, group
