"""Every process an attempt started, found and ended together.

The launcher chooses once, when it starts, how it finds them (:func:`choose`):

- a cgroup v2 group per attempt (:mod:`runtara.launcher.cgroups`), when the
  server's own cgroup lets it make one: no process can leave it, whatever it
  does with process groups and sessions;
- otherwise the attempt's process group and session (the main process leads
  both), plus every process whose chain of parents leads to one of those, read
  from /proc. A process that left the session with ``setsid`` is found while its
  parent lives; once that parent has exited (a daemon's double fork), it belongs
  to init and escapes.

An attempt's processes end with it: when the launcher stops it (SIGTERM to all,
SIGKILL ``kill_after`` later), and when its main process ends by itself, completed
or not (:class:`Leftovers`). A workflow that wants a daemon to outlive it should
not be run by the launcher.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

import attrs

from runtara.launcher import cgroups, processes

logger = logging.getLogger(__name__)


def choose(use_cgroups: bool) -> Path | None:
    """The cgroup under which each attempt gets a group of its own, or None for the
    process group and session; says which in the log. Groups of attempts that
    ended while no launcher watched them are ended and removed."""
    if use_cgroups:
        try:
            parent = cgroups.own_parent()
        except cgroups.Unavailable as why:
            reason = str(why)
        else:
            cgroups.sweep_orphans(parent)
            logger.info(
                "the launcher ends everything an attempt started through a cgroup of its own, "
                "under %s",
                parent,
            )
            return parent
    else:
        reason = "--instance-cgroups is off"
    logger.info(
        "the launcher ends everything an attempt started through its process group and "
        "session (no cgroup: %s); a daemon that leaves both with setsid and whose parent "
        "exits escapes this",
        reason,
    )
    return None


@attrs.define
class Members:
    """The processes of one attempt, its main process ``pid`` first among them."""

    pid: int
    started: int | None
    """The main process's start time (it names the process even after pid reuse)."""
    group: Path | None = None
    """The attempt's cgroup, if it has one: then exactly its members."""
    _seen: dict[int, int] = attrs.field(factory=dict, init=False)
    """Without a group: the members found so far, by pid, with their start times; one
    stays a member after its parent exits and it is no longer a descendant."""

    @classmethod
    def adopted(cls, pid: int, started: int | None, folder_name: str, attempt: int) -> Members:
        """A running process another server started: its group is the one it is in,
        if that is named for this attempt of this instance and pid."""
        group = cgroups.group_of(pid)
        if group is None or group.name != cgroups.group_name(folder_name, attempt, pid):
            group = None
        return cls(pid, started, group)

    def signal(self, number: int) -> None:
        if self.group is not None:
            cgroups.signal_all(self.group, number)
            return
        members = self.remaining()  # before the signal: a parent that exits loses its children
        if processes.start_time(self.pid) == self.started:
            try:  # the group at once: no member forks past it
                os.killpg(self.pid, number)
            except (ProcessLookupError, PermissionError):
                pass
        for pid in members:
            try:
                os.kill(pid, number)
            except (ProcessLookupError, PermissionError):
                pass

    def remaining(self) -> list[int]:
        """Those still running (not zombies)."""
        if self.group is not None:
            return cgroups.pids(self.group)
        table = _processes()
        members = _session_members(table, self.pid, self.started, self._seen)
        self._seen = {pid: table[pid].started for pid in members}
        return members

    def release(self) -> bool:
        """Remove the group once nothing is left in it: True when done."""
        return self.group is None or cgroups.remove(self.group)


@attrs.define(eq=False)
class _Ending:
    instance_id: str
    members: Members
    terminated_at: float | None


class Leftovers:
    """Attempts whose main process ended, until the rest of what they started has:
    SIGTERM at once (unless the attempt was being stopped already), SIGKILL
    ``kill_after`` after the first SIGTERM; then the group is removed."""

    def __init__(self, kill_after: float) -> None:
        self.kill_after = kill_after
        self._ending: list[_Ending] = []

    def __len__(self) -> int:
        return len(self._ending)

    def groups(self) -> set[Path]:
        return {e.members.group for e in self._ending if e.members.group is not None}

    def add(
        self,
        instance_id: str,
        members: Members,
        terminated_at: float | None,
    ) -> None:
        self._ending.append(_Ending(instance_id, members, terminated_at))

    def tick(self) -> None:
        for ending in list(self._ending):
            left = ending.members.remaining()
            if not left:
                if ending.members.release():
                    self._ending.remove(ending)
            elif ending.terminated_at is None:
                logger.info(
                    "instance %r: ending %d processes its attempt left running",
                    ending.instance_id,
                    len(left),
                    extra={"instance_id": ending.instance_id, "action": "ending leftovers"},
                )
                ending.terminated_at = time.monotonic()
                ending.members.signal(signal.SIGTERM)
            elif time.monotonic() - ending.terminated_at >= self.kill_after:
                ending.members.signal(signal.SIGKILL)

    def kill(self) -> None:
        """The server stops: SIGKILL them all now (a group not empty yet is removed
        by the next launcher's sweep)."""
        for ending in self._ending:
            ending.members.signal(signal.SIGKILL)
            ending.members.release()
        self._ending.clear()


@attrs.frozen
class _Stat:
    state: str
    parent: int
    group: int
    session: int
    started: int


def _session_members(
    table: dict[int, _Stat], pid: int, started: int | None, seen: dict[int, int]
) -> list[int]:
    """The live processes of the process group and session ``pid`` leads, those
    ``seen`` before (pid: start time), and the descendants of all these. Members
    that started before the main process are not its; while a group or session has
    members its id cannot be reused, so a match is safe unless ``pid`` now names
    another process."""
    found: set[int] = set()
    main = table.get(pid)
    if main is None or started is None or main.started == started:  # else: pid reused
        found = {
            other
            for other, stat in table.items()
            if pid in (stat.session, stat.group) and (started is None or stat.started >= started)
        }
        if main is not None:
            found.add(pid)
    found.update(
        other for other, start in seen.items() if other in table and table[other].started == start
    )
    children: dict[int, list[int]] = {}
    for other, stat in table.items():
        children.setdefault(stat.parent, []).append(other)
    unvisited = list(found)
    while unvisited:
        for child in children.get(unvisited.pop(), ()):
            if child not in found:
                found.add(child)
                unvisited.append(child)
    found.discard(os.getpid())
    return sorted(other for other in found if table[other].state != "Z")


def _processes() -> dict[int, _Stat]:
    table = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return table
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        table[int(entry)] = _Stat(
            fields[0], int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19])
        )
    return table
