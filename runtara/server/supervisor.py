"""``runtara-core --processes N``: N server processes on one UDP port, and their parent.

The parent serves nothing itself. It binds N UDP sockets to the same port
with SO_REUSEPORT, attaches the program that steers each datagram to the
process of its connection and new connections to the process with the fewest
(:mod:`runtara.server.steering`), and starts N copies of the server (each the shape of a single
server: event-loop thread, bounded worker pool, driver), handing socket i to
process i; they get the parent's settings through their ``RUNTARA_*``
variables. The parent keeps the sockets: when a process dies and is started
again, the set of sockets does not change, so the kernel does not move the
other processes' clients to another socket (it would, were a socket closed
and bound again), and datagrams for the dead process wait in its socket's
buffer for its successor. Server process 0 also runs the launcher and
the maintenance tasks; every process serves requests.

What the parent guarantees about signals and children:

- The first SIGINT or SIGTERM is forwarded as SIGTERM to every server process,
  including one being started at that moment (a child started while the parent
  is stopping is told as soon as it is recorded), and no process is started
  after it. The parent waits for all of them and exits 0. A second signal kills
  them (SIGKILL) and the parent exits 1, as a single server does.
- A server process that dies otherwise is logged and started again, unless it
  could not start (exit code CANNOT_START): then the parent stops the others
  and exits 1.
- A parent that dies (even by SIGKILL) takes its server processes with it, as
  one crashed server: the kernel sends each SIGKILL, so no server process
  outlives its parent to serve a port a new server binds. Instance processes
  the launcher started run in sessions of their own and survive, for the next
  server to adopt.
- Orphans are reaped. When the parent is PID 1 (a container's init) or a
  child subreaper, processes whose own parent ended are handed to it (instance
  processes after server process 0 died, what workflows left behind); it
  collects each as it exits, so none stays a zombie. It collects only those:
  its server processes' exit statuses are left to their Popen objects.

The processes share their figures through a folder: each writes its own
counters there twice a second, and whichever process answers GetStats sums
them (and gives each process's own, labelled with its number).
"""

from __future__ import annotations

import ctypes
import ipaddress
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
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

import attrs

from runtara import __version__, errors, runtime_files
from runtara import config as config_module
from runtara.credentials import Credentials
from runtara.launcher import processes
from runtara.server import address_locks, binding, stateless_reset, steering, tls

logger = logging.getLogger("runtara")

PROCESS_INDEX = "RUNTARA_PROCESS_INDEX"
"""Set by the parent in each server process: its number, from 0."""
PROCESS_COUNT = "RUNTARA_PROCESS_COUNT"
"""Set by the parent in each server process: how many server processes it runs."""
SOCKETS = "RUNTARA_SOCKETS"
"""Set by the parent in each server process: ``service=fd,...``, its bound sockets."""
MAILBOXES = "RUNTARA_MAILBOXES"
"""Set by the parent in each server process: ``service=fd fd ...,...``, the sockets
through which the processes of each service's group hand each other datagrams."""
PARENT = "RUNTARA_PARENT_PID"
"""Set by the parent in each server process: the parent's pid."""
FIGURES_DIR = "RUNTARA_FIGURES_DIR"
"""Set by the parent: the folder where the server processes share their figures."""
INSTANCE_UMASK = "RUNTARA_INSTANCE_UMASK"
"""Set by the parent in each server process: the umask the server was started with,
octal, which instance processes get (the server itself writes with 077)."""
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


def instance_umask(started: int, environ: Mapping[str, str] = os.environ) -> int:
    """The umask instance processes get: the one the whole server was started with
    (``started``, unless a parent says otherwise)."""
    raw = environ.get(INSTANCE_UMASK)
    return int(raw, 8) if raw else started


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


def inherited_mailboxes(environ: Mapping[str, str] = os.environ) -> dict[str, list[socket.socket]]:
    """The mailbox sockets a parent handed to this process, by service name."""
    mailboxes = {}
    for item in filter(None, environ.get(MAILBOXES, "").split(",")):
        name, _, fds = item.partition("=")
        mailboxes[name] = [socket.socket(fileno=int(fd)) for fd in fds.split()]
    return mailboxes


def inherited_sockets(environ: Mapping[str, str] = os.environ) -> dict[str, socket.socket]:
    """The bound UDP sockets a parent handed to this process, by service name."""
    sockets = {}
    for item in filter(None, environ.get(SOCKETS, "").split(",")):
        name, _, fd = item.partition("=")
        sockets[name] = socket.socket(fileno=int(fd))
    return sockets


def _bind(
    host: str, port: int, count: int, setting: str, claims: address_locks.Claims
) -> list[socket.socket]:
    """``count`` UDP sockets on one port (a free one when ``port`` is 0), SO_REUSEPORT,
    the address claimed for this server first (another server joining the port's
    group would take a share of its clients)."""
    claims.claim("udp", (host, port), setting)
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sockets.append(binding.bind_udp(host, port, setting=setting, reuse_port=True))
            port = sockets[-1].getsockname()[1]
            claims.claim("udp", (host, port), setting)
    except errors.ListenFailed:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _bind_all(
    config: config_module.ServerConfig, claims: address_locks.Claims
) -> dict[str, list[socket.socket]]:
    """Every service's sockets, one per server process, and the HTTP address (its
    server processes bind it with SO_REUSEPORT) claimed; ListenFailed if a port
    cannot be had."""
    bound: dict[str, list[socket.socket]] = {}
    wanted = [("instance", (config.host, config.port), "--host/--port")]
    if config.management_addr is not None:
        wanted.append(("management", config.management_addr, "--management-addr"))
    try:
        for name, address, setting in wanted:
            bound[name] = _bind(*address, config.processes, setting, claims)
        if config.http_addr is not None:
            claims.claim("tcp", config.http_addr, "--http-addr")
    except errors.ListenFailed:
        for sockets in bound.values():
            for sock in sockets:
                sock.close()
        claims.release()
        raise
    return bound


def log_shared_facts(
    identity: tls.Identity,
    instance: tuple[str, int],
    management: tuple[str, int] | None,
) -> None:
    """What a server says once at start about itself: its certificate, its
    management address, and a warning when the instance protocol is exposed."""
    logger.info(
        "TLS certificate: %s, SHA-256 fingerprint %s",
        "self-signed for localhost"
        if identity.self_signed
        else identity.certificate.subject.rfc4514_string(),
        identity.fingerprint,
    )
    if management is not None:
        logger.info(
            "serving the management protocol on %s:%d (read and operate credentials)",
            *management[:2],
        )
    if not ipaddress.ip_address(instance[0]).is_loopback:
        logger.warning(
            "the instance protocol has no authentication: anyone who reaches %s can "
            "register, checkpoint and end instances; keep it on loopback, or on a "
            "network only your instances reach",
            runtime_files.address_text(instance),
        )


def _steering_table(folder: Path, service: str) -> Path:
    return folder / f"steering-{service}"


def steer(
    sockets: Mapping[str, socket.socket],
    mailboxes: Mapping[str, list[socket.socket]],
    folder: Path,
    index: int,
    count: int,
) -> dict[str, steering.Steering]:
    """In server process ``index`` of ``count``: its part in steering the groups of
    each of its ``sockets`` (``folder`` holds their shared tables)."""
    steered = {}
    for name in sockets:
        steered[name] = steering.Steering(
            steering.SharedTable(_steering_table(folder, name), count),
            process=index,
            id_length=stateless_reset.CONNECTION_ID_LENGTH,
            mailboxes=steering.Mailboxes.of_process(index, mailboxes[name]),
        )
    return steered


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


def supervise(
    config: config_module.ServerConfig, credentials: Credentials, storage: str, umask: int
) -> int:
    """Run ``config.processes`` server processes until a signal; ``storage`` names
    the store for the runtime file, ``umask`` is the one instance processes get."""
    claims = address_locks.Claims({"pid": os.getpid(), "storage": storage})
    try:
        bound = _bind_all(config, claims)
    except errors.ListenFailed as error:
        logger.error("%s", error)
        return 1
    host, port = bound["instance"][0].getsockname()[:2]
    shared = Path(tempfile.mkdtemp(prefix="runtara-processes-"))
    config = _with_identity(config, shared)
    runtime_file = runtime_files.write(_running(config, credentials, storage, bound))
    (shared / "figures").mkdir()
    groups: dict[str, steering.Group] = {}
    if config.processes > 1:  # with one socket, the kernel has nothing to choose
        groups = {
            name: steering.Group(
                sockets,
                _steering_table(shared / "figures", name),
                stateless_reset.CONNECTION_ID_LENGTH,
            )
            for name, sockets in bound.items()
        }
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
            INSTANCE_UMASK: f"{umask:o}",
        },
    )
    children: dict[int, subprocess.Popen] = {}
    stopping = False
    killed = False
    failed = False

    def start(index: int) -> None:
        if stopping:
            return
        mine = {name: sockets[index] for name, sockets in bound.items()}
        handed = ",".join(f"{name}={sock.fileno()}" for name, sock in mine.items())
        boxes = {name: group.mailboxes.for_process(index) for name, group in groups.items()}
        boxes_handed = ",".join(
            f"{name}={' '.join(str(sock.fileno()) for sock in socks)}"
            for name, socks in boxes.items()
        )
        child = subprocess.Popen(
            [sys.executable, "-m", "runtara"],
            env={
                **environment,
                PROCESS_INDEX: str(index),
                SOCKETS: handed,
                MAILBOXES: boxes_handed,
                PARENT: str(os.getpid()),
            },
            pass_fds=[sock.fileno() for sock in mine.values()]
            + [sock.fileno() for socks in boxes.values() for sock in socks],
        )
        children[index] = child
        logger.info("server process %d started (pid %d)", index, child.pid)
        if stopping:
            # A signal handled while Popen ran, after its fork, could not see this
            # child: tell it now. (A server process ignores a repeated signal.)
            child.send_signal(signal.SIGKILL if killed else signal.SIGTERM)

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
        "runtara-core: %d server processes on %s:%d (UDP, SO_REUSEPORT, steered)",
        config.processes,
        host,
        port,
    )
    log_shared_facts(
        tls.load(config.tls_cert, config.tls_key),
        (host, port),
        bound["management"][0].getsockname() if "management" in bound else None,
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
                if any([group.process_died(index) for group in groups.values()]):
                    logger.info(
                        "new clients go to server process %d first",
                        (index + 1) % config.processes,
                    )
                time.sleep(RESTART_DELAY)
                start(index)
            reap_orphans({child.pid for child in children.values()})
    finally:
        runtime_files.remove(runtime_file)
        claims.release()
        shutil.rmtree(shared, ignore_errors=True)
        for sockets in bound.values():
            for sock in sockets:
                sock.close()
        for group in groups.values():
            group.close()
    if killed or failed:
        return 1
    logger.info("stopped")
    return 0


def _running(
    config: config_module.ServerConfig,
    credentials: Credentials,
    storage: str,
    bound: Mapping[str, list[socket.socket]],
) -> runtime_files.RunningServer:
    """What the runtime file of the server these processes make says."""
    shown = runtime_files.address_text
    return runtime_files.RunningServer(
        pid=os.getpid(),
        started=processes.start_time(os.getpid()),
        version=__version__,
        instance_addr=shown(bound["instance"][0].getsockname()),
        management_addr=shown(bound["management"][0].getsockname())
        if "management" in bound
        else None,
        http_addr=shown(config.http_addr),
        fingerprint=tls.load(config.tls_cert, config.tls_key).fingerprint,
        storage=storage,
        runs_dir=str(config.runs_dir.absolute()),
        read_token=credentials.read,
        operate_token=credentials.operate,
    )


def reap_orphans(own: Collection[int]) -> None:
    """Collect this process's exited children that are not ``own``: orphans handed
    to it (it is PID 1 or a subreaper). Each is looked at without being collected
    first, so that an ``own`` child's exit status stays for its Popen."""
    while True:
        try:
            exited = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # no children at all
            return
        if exited is None or exited.si_pid == 0 or exited.si_pid in own:
            return  # an own child that just exited is collected at its next poll
        os.waitpid(exited.si_pid, os.WNOHANG)
        logger.debug("collected orphan process %d (status %d)", exited.si_pid, exited.si_status)


class SharedFigures:
    """The figures of every server process, through the folder they share."""

    def __init__(
        self,
        folder: Path,
        index: int,
        more: Callable[[], Mapping[str, float]] = dict,
    ) -> None:
        self.folder = folder
        self.index = index
        self._more = more
        """This process's figures that are not the server's (its part in steering)."""

    def publish(self, figures: Mapping[str, float]) -> None:
        """Write this process's figures (atomically: readers see old or new, never half)."""
        path = self.folder / f"{self.index}.json"
        scratch = path.with_suffix(".tmp")
        scratch.write_text(json.dumps({**figures, **self._more()}))
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
        each[self.index] = {**own, **self._more()}
        total: dict[str, float] = {}
        for number, figures in sorted(each.items()):
            for name, value in figures.items():
                if "_per_" not in name:
                    total[name] = total.get(name, 0) + value
                total[f"process.{number}.{name}"] = value
        total["processes"] = len(each)
        return total
