"""``runtara-core --processes N``: N server processes on one UDP port, and their parent.

The parent serves nothing itself. It binds N UDP sockets to the same port
with SO_REUSEPORT, so that the kernel keeps each client's datagrams on one
socket, and starts N copies of the server (each the shape of a single
server: event-loop thread, bounded worker pool, driver), handing socket i to
process i; they get the parent's settings through their ``RUNTARA_*``
variables. The parent keeps the sockets: when a process dies and is started
again, the set of sockets does not change, so the kernel does not move the
other processes' clients to another socket (it would, were a socket closed
and bound again), and datagrams for the dead process wait in its socket's
buffer for its successor. Server process 0 also runs the launcher and
the maintenance tasks; every process serves requests. The parent forwards
SIGINT and SIGTERM to every child, waits for all of them and exits 0; a child
that dies otherwise is logged and started again, unless it could not start
(exit code CANNOT_START): then the parent stops the others and exits 1. A second signal kills them
and the parent exits 1, as a single server does. A parent that dies (even by
SIGKILL) takes its children with it, as one crashed server: the kernel sends
each SIGKILL, so no server process outlives its parent to serve a port a new
server binds.

The processes share their figures through a folder: each writes its own
counters there twice a second, and whichever process answers GetStats sums
them (and gives each process's own, labelled with its number).
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import attrs

from runtara import config as config_module
from runtara import errors
from runtara.server import binding, tls

logger = logging.getLogger("runtara")

PROCESS_INDEX = "RUNTARA_PROCESS_INDEX"
"""Set by the parent in each server process: its number, from 0."""
PROCESS_COUNT = "RUNTARA_PROCESS_COUNT"
"""Set by the parent in each server process: how many server processes it runs."""
SOCKETS = "RUNTARA_SOCKETS"
"""Set by the parent in each server process: ``service=fd,...``, its bound sockets."""
PARENT = "RUNTARA_PARENT_PID"
"""Set by the parent in each server process: the parent's pid."""
FIGURES_DIR = "RUNTARA_FIGURES_DIR"
"""Set by the parent: the folder where the server processes share their figures."""
METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"
"""Set by the parent: prometheus_client's folder for the processes' metrics."""
CANNOT_START = 3
"""A server process's exit code when it cannot start (its storage, a port): the
parent then stops the others and exits 1 rather than start it again."""
RESTART_DELAY = 1.0
POLL = 0.2


def process_index(environ: Mapping[str, str] = os.environ) -> int | None:
    """This process's number when a parent started it, else None."""
    raw = environ.get(PROCESS_INDEX)
    return int(raw) if raw is not None else None


def process_count(environ: Mapping[str, str] = os.environ) -> int:
    """How many server processes serve this one's port (1 when no parent started it)."""
    return int(environ.get(PROCESS_COUNT, "1"))


_PR_SET_PDEATHSIG = 1
"""prctl(2): the signal the kernel sends this process when its parent ends."""


def stop_with_parent(environ: Mapping[str, str] = os.environ) -> None:
    """In a server process a parent started: have the kernel kill it when the
    parent ends, and end at once if the parent ended already."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"prctl(PR_SET_PDEATHSIG): {os.strerror(error)}")
    if os.getppid() != int(environ[PARENT]):
        os.kill(os.getpid(), signal.SIGKILL)


def inherited_sockets(environ: Mapping[str, str] = os.environ) -> dict[str, socket.socket]:
    """The bound UDP sockets a parent handed to this process, by service name."""
    sockets = {}
    for item in filter(None, environ.get(SOCKETS, "").split(",")):
        name, _, fd = item.partition("=")
        sockets[name] = socket.socket(fileno=int(fd))
    return sockets


def _bind(host: str, port: int, count: int, setting: str) -> list[socket.socket]:
    """``count`` UDP sockets on one port (a free one when ``port`` is 0), SO_REUSEPORT."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sockets.append(binding.bind_udp(host, port, setting=setting, reuse_port=True))
            port = sockets[-1].getsockname()[1]
    except errors.ListenFailed:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _bind_all(config: config_module.ServerConfig) -> dict[str, list[socket.socket]]:
    """Every service's sockets, one per server process; ListenFailed if a port cannot be had."""
    bound = {"instance": _bind(config.host, config.port, config.processes, "--host/--port")}
    if config.management_addr is not None:
        try:
            bound["management"] = _bind(
                *config.management_addr, config.processes, "--management-addr"
            )
        except errors.ListenFailed:
            for sock in bound["instance"]:
                sock.close()
            raise
    return bound


def _with_identity(config: config_module.ServerConfig, folder: Path) -> config_module.ServerConfig:
    """The configuration with a certificate every process serves: without one
    configured, a fresh self-signed one, written (private key 0600) for the
    processes to load, so that clients see one fingerprint whoever answers."""
    if config.tls_cert is not None:
        return config
    cert, key = folder / "cert.pem", folder / "key.pem"
    key.touch(mode=0o600)
    tls.write_pem(tls.self_signed(), cert, key)
    return attrs.evolve(config, tls_cert=cert, tls_key=key)


def supervise(config: config_module.ServerConfig) -> int:
    try:
        bound = _bind_all(config)
    except errors.ListenFailed as error:
        logger.error("%s", error)
        return 1
    host, port = bound["instance"][0].getsockname()[:2]
    shared = Path(tempfile.mkdtemp(prefix="runtara-processes-"))
    config = _with_identity(config, shared)
    (shared / "figures").mkdir()
    (shared / "metrics").mkdir()
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("RUNTARA_")
    }
    environment.update(config_module.to_environment(config_module.SERVER_SETTINGS, config))
    environment.update(
        RUNTARA_PROCESSES="1",
        **{
            FIGURES_DIR: str(shared / "figures"),
            METRICS_DIR: str(shared / "metrics"),
            PROCESS_COUNT: str(config.processes),
        },
    )
    children: dict[int, subprocess.Popen] = {}
    stopping = False
    killed = False
    failed = False

    def start(index: int) -> None:
        mine = {name: sockets[index] for name, sockets in bound.items()}
        handed = ",".join(f"{name}={sock.fileno()}" for name, sock in mine.items())
        child = subprocess.Popen(
            [sys.executable, "-m", "runtara"],
            env={
                **environment,
                PROCESS_INDEX: str(index),
                SOCKETS: handed,
                PARENT: str(os.getpid()),
            },
            pass_fds=[sock.fileno() for sock in mine.values()],
        )
        children[index] = child
        logger.info("server process %d started (pid %d)", index, child.pid)

    def on_signal(number: int, frame: object) -> None:
        nonlocal stopping, killed
        name = signal.Signals(number).name
        if stopping:
            logger.warning("second %s: exiting now, killing the server processes", name)
            forward = signal.SIGKILL
            killed = True
        else:
            logger.info("%s received: stopping %d server processes", name, len(children))
            forward = signal.SIGTERM
        stopping = True
        signal_all(forward)

    def signal_all(number: int) -> None:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(number)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    logger.info(
        "runtara-core: %d server processes on %s:%d (UDP, SO_REUSEPORT)",
        config.processes,
        host,
        port,
    )
    try:
        for index in range(config.processes):
            start(index)
        while children:
            time.sleep(POLL)
            for index, child in list(children.items()):
                code = child.poll()
                if code is None:
                    continue
                del children[index]
                if stopping:
                    continue
                if code == CANNOT_START:
                    logger.error("server process %d cannot start: stopping", index)
                    stopping = failed = True
                    signal_all(signal.SIGTERM)
                    continue
                logger.warning(
                    "server process %d (pid %d) %s; starting it again",
                    index,
                    child.pid,
                    f"exited with code {code}" if code >= 0 else f"was killed by signal {-code}",
                )
                time.sleep(RESTART_DELAY)
                if not stopping:
                    start(index)
    finally:
        shutil.rmtree(shared, ignore_errors=True)
        for sockets in bound.values():
            for sock in sockets:
                sock.close()
    if killed or failed:
        return 1
    logger.info("stopped")
    return 0


class SharedFigures:
    """The figures of every server process, through the folder they share."""

    def __init__(self, folder: Path, index: int) -> None:
        self.folder = folder
        self.index = index

    def publish(self, figures: Mapping[str, float]) -> None:
        """Write this process's figures (atomically: readers see old or new, never half)."""
        path = self.folder / f"{self.index}.json"
        scratch = path.with_suffix(".tmp")
        scratch.write_text(json.dumps(dict(figures)))
        os.replace(scratch, path)

    def merged(self, own: Mapping[str, float]) -> dict[str, float]:
        """Every process's figures summed under their names (ratios, named ``*_per_*``,
        are not summed), and each process's own under ``process.<number>.<name>``
        (this process's are the ones just taken)."""
        each: dict[int, Mapping[str, float]] = {}
        for path in self.folder.glob("*.json"):
            try:
                each[int(path.stem)] = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # a process that just started or stopped
        each[self.index] = own
        total: dict[str, float] = {}
        for number, figures in sorted(each.items()):
            for name, value in figures.items():
                if "_per_" not in name:
                    total[name] = total.get(name, 0) + value
                total[f"process.{number}.{name}"] = value
        total["processes"] = len(each)
        return total
