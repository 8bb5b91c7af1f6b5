"""Cgroup v2 groups for instance processes: one per attempt, under the server's own.

Each attempt the launcher starts gets a group of its own, named
``runtara-<run folder name>-<attempt>-<pid>``, as a child of the cgroup the server
runs in (which must let the server make one: root, or a delegated subtree). A
process cannot leave its group by forking, ``setsid`` or double forking, so the
group is the whole of what an attempt started, and ``cgroup.kill`` (Linux 5.14)
ends all of it at once. No controller is enabled; the group is used to find and
kill processes, not to limit them.

The pid in the name makes a group whose main process is gone recognisable to any
launcher on the machine (:func:`sweep_orphans`), so the remains of an attempt that
ended while no server watched it are ended too.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import signal
from collections.abc import Collection
from pathlib import Path

logger = logging.getLogger(__name__)

PREFIX = "runtara-"
_NAME = re.compile(rf"^{re.escape(PREFIX)}.*-(\d+)-(\d+)$")
"""A group's name; the groups are the attempt number and the main process's pid."""


class Unavailable(Exception):
    """No group can be made here; the message says why."""


def group_name(folder_name: str, attempt: int, pid: int) -> str:
    """The name of an attempt's group (``folder_name``: its instance's run folder)."""
    return f"{PREFIX}{folder_name}-{attempt}-{pid}"


def hierarchy() -> tuple[Path, str]:
    """Where the cgroup v2 hierarchy is mounted, and which of its paths the mount
    shows at its top; raises Unavailable."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError as error:
        raise Unavailable(f"cannot read /proc/self/mountinfo: {error.strerror}") from None
    for line in lines:
        fields, _, after = line.partition(" - ")
        if after.split(" ", 1)[0] == "cgroup2":
            parts = fields.split()
            return Path(_unescape(parts[4])), _unescape(parts[3])
    raise Unavailable("no cgroup v2 hierarchy is mounted")


def group_of(pid: int | str) -> Path | None:
    """The folder of the cgroup v2 group ``pid`` is in ("self": this process); None
    when that cannot be read or lies outside the mount."""
    try:
        mount, top = hierarchy()
    except Unavailable:
        return None
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            path = line[3:]
            if path.endswith(" (deleted)"):
                return None
            if top != "/":
                if not (path == top or path.startswith(top + "/")):
                    return None
                path = path[len(top) :]
            return mount / path.lstrip("/")
    return None


def own_parent() -> Path:
    """The server's own group, checked to accept a child group that can be killed
    as a whole; raises Unavailable saying why not."""
    hierarchy()  # says why there is none
    parent = group_of("self")
    if parent is None:
        raise Unavailable("this process is in no cgroup v2 group under the mount")
    probe = parent / group_name("probe", 0, os.getpid())
    try:
        probe.mkdir()
    except OSError as error:
        raise Unavailable(f"cannot make a group in {parent}: {error.strerror}") from None
    try:
        if not (probe / "cgroup.kill").exists():
            raise Unavailable("the kernel has no cgroup.kill (Linux 5.14 or later has it)")
    finally:
        probe.rmdir()
    return parent


def create(parent: Path, name: str) -> Path:
    """A new empty group; raises OSError."""
    group = parent / name
    group.mkdir()
    return group


def join(group: Path, pid: int) -> None:
    """Move the process ``pid`` (not its descendants, which it must not have yet)."""
    (group / "cgroup.procs").write_text(f"{pid}\n")


def pids(group: Path) -> list[int]:
    """The processes in the group (not zombies); none once it is removed."""
    try:
        return [int(line) for line in (group / "cgroup.procs").read_text().split()]
    except FileNotFoundError:
        return []


def signal_all(group: Path, number: int) -> None:
    """SIGKILL the whole group at once; another signal to each process in it."""
    if number == signal.SIGKILL:
        try:
            (group / "cgroup.kill").write_text("1\n")
        except FileNotFoundError:
            pass
        return
    for pid in pids(group):
        try:
            os.kill(pid, number)
        except (ProcessLookupError, PermissionError):
            pass


def remove(group: Path) -> bool:
    """Remove the group if it is empty: True once it is gone."""
    try:
        group.rmdir()
    except FileNotFoundError:
        return True
    except OSError as error:
        if error.errno == errno.EBUSY:
            return False
        raise
    return True


def sweep_orphans(parent: Path, keep: Collection[Path] = ()) -> None:
    """SIGKILL what is in the groups under ``parent`` whose main process is gone, and
    remove them once empty; the groups in ``keep`` are being ended already.

    A group whose main process still runs in it, or waits in ``parent`` to be
    moved in, is a launcher's to look after. (So is one whose main process just
    ended and whose launcher is ending the rest with SIGTERM first; another
    launcher in the same cgroup that sweeps then kills the rest at once.)"""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        match = _NAME.match(name)
        if match is None:
            continue
        group = parent / name
        if group in keep:
            continue
        pid = int(match.group(2))
        if os.path.exists(f"/proc/{pid}") and group_of(pid) in (group, parent, None):
            continue  # the main process (or, rarely, a pid reused in it)
        try:
            left = pids(group)
            if left:
                logger.warning(
                    "ending %d processes left in %s by an attempt that ended unwatched",
                    len(left),
                    group,
                )
                signal_all(group, signal.SIGKILL)  # removed by a later sweep
            else:
                remove(group)
        except OSError as error:
            logger.warning("cannot end or remove %s: %s", group, error)


def _unescape(field: str) -> str:
    """A mountinfo path field: space, tab, newline and backslash come as octal."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)
