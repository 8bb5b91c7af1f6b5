"""Who used the CPU during a measured window, and whether the figure measured the server.

CPU times come from Linux's ``/proc``. On a machine whose cores the client
shares with the server, a client process at the limit of its core, or a
machine with no idle CPU, bounds the throughput as much as the server does:
:func:`saturation` says so in words.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import attrs

from runtara.bench import servers

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

CLIENT_SATURATED = 0.90
"""Share of one core a client process (one thread of Python) uses at its limit."""
MACHINE_IDLE_FLOOR = 0.05
"""Share of the machine's CPU below which it had none to spare."""


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process, all its threads. Raises OSError
    when the process is gone."""
    with open(f"/proc/{pid}/stat") as stat:
        # the command name, in parentheses, may hold spaces: split after it
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_cpu_seconds(pid: int) -> float:
    """:func:`cpu_seconds` of a process and its live descendants (a server that
    runs several processes is measured whole)."""
    total = 0.0
    for member in [pid, *servers.descendants(pid)]:
        try:
            total += cpu_seconds(member)
        except OSError:
            pass  # it ended between the listing and the read
    return total


@attrs.frozen
class MachineTimes:
    """The machine's CPU time since boot, all cores together, in seconds."""

    busy: float
    idle: float
    """Idle and waiting for I/O."""


def machine_times() -> MachineTimes:
    with open("/proc/stat") as stat:
        # cpu user nice system idle iowait irq softirq steal (guest and guest_nice,
        # which follow, are already counted in user and nice)
        values = [int(value) for value in stat.readline().split()[1:9]]
    idle = values[3] + values[4]
    return MachineTimes(busy=(sum(values) - idle) / CLOCK_TICKS, idle=idle / CLOCK_TICKS)


@attrs.frozen
class Sample:
    at: float
    """``time.monotonic()``."""
    server: float | None
    """CPU seconds of the server's processes (None: not ours to measure)."""
    clients: tuple[float, ...]
    """CPU seconds of each client process."""
    machine: MachineTimes


def sample(server_pid: int | None, client_pids: Sequence[int]) -> Sample:
    """The CPU times now. Raises OSError when a client process is gone."""
    return Sample(
        at=time.monotonic(),
        server=None if server_pid is None else tree_cpu_seconds(server_pid),
        clients=tuple(cpu_seconds(pid) for pid in client_pids),
        machine=machine_times(),
    )


@attrs.frozen
class Use:
    """CPU used between two samples."""

    seconds: float
    server: float | None
    clients: tuple[float, ...]
    machine_busy: float
    machine_idle: float
    cores: int

    @classmethod
    def between(cls, start: Sample, end: Sample) -> Use:
        return cls(
            seconds=end.at - start.at,
            server=None if start.server is None else end.server - start.server,
            clients=tuple(b - a for a, b in zip(start.clients, end.clients, strict=True)),
            machine_busy=end.machine.busy - start.machine.busy,
            machine_idle=end.machine.idle - start.machine.idle,
            cores=os.cpu_count() or 1,
        )

    @property
    def client(self) -> float:
        """CPU seconds of all the client processes."""
        return sum(self.clients)

    @property
    def client_core_share(self) -> float | None:
        """The mean share of one core each client process used (1.0: a whole core)."""
        if not self.clients or self.seconds <= 0:
            return None
        return self.client / len(self.clients) / self.seconds

    @property
    def idle_share(self) -> float:
        """The share of the machine's CPU that was idle."""
        total = self.machine_busy + self.machine_idle
        return self.machine_idle / total if total > 0 else 0.0

    @property
    def other_cores(self) -> float:
        """Cores used by everything but the server and the client processes."""
        if self.seconds <= 0:
            return 0.0
        ours = self.client + (self.server or 0.0)
        return max(0.0, self.machine_busy - ours) / self.seconds


def saturation(use: Use) -> dict[str, str]:
    """What bounded the window besides the server: ``client`` and ``machine`` (when
    they did), each with a sentence saying so."""
    found = {}
    share = use.client_core_share
    if share is not None and share >= CLIENT_SATURATED:
        processes = len(use.clients)
        found["client"] = (
            f"client-bound: the client used {share * 100:.0f} % of a core per process "
            f"({processes} process{'es' if processes > 1 else ''}); "
            "the figure measures the client too"
        )
    if use.idle_share < MACHINE_IDLE_FLOOR:
        seconds = max(use.seconds, 1e-9)
        used = []
        if use.server is not None:
            used.append(f"server {use.server / seconds:.1f}")
        if use.clients:
            used.append(f"client {use.client / seconds:.1f}")
        used.append(f"other {use.other_cores:.1f}")
        found["machine"] = (
            f"machine-bound: {use.idle_share * 100:.0f} % of the {use.cores} cores was idle "
            f"(cores used: {', '.join(used)}); the figure measures the machine's limit"
        )
    return found
