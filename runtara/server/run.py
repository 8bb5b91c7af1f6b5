"""``runtara-core`` serving in the foreground until SIGINT or SIGTERM."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path

import attrs

from runtara import __version__, clock, errors, runtime_files
from runtara import credentials as credentials_module
from runtara.admin import retention, staleness
from runtara.background import PeriodicTask
from runtara.config import ServerConfig
from runtara.launcher import launcher, processes, scheduler
from runtara.server import address_locks, supervisor
from runtara.server.app import InstanceServer
from runtara.storage import base, selection

logger = logging.getLogger("runtara")

FIGURES_INTERVAL = 0.5
"""Seconds between two publications of a server process's figures to its siblings."""


SIGNAL_CHECK_INTERVAL = 0.2
"""Seconds between two wake-ups of the main thread, at most a signal's delay."""


def serve(config: ServerConfig) -> int:
    """Open the storage, migrate it, serve, and shut down cleanly on a signal.

    Returns the process exit code: 0 after a clean stop, 1 when the server
    cannot start. A second signal during shutdown exits at once with 1 (for a
    server process of ``--processes``: its parent's second signal). With
    ``--processes`` above 1 this process becomes the parent of that many server
    processes (see :mod:`runtara.server.supervisor`).
    """
    # Everything the server writes (the database and its journal, logs, inputs,
    # runtime files, keys) is its user's alone, whatever umask it was started
    # with; the instance processes get that one back.
    started_umask = supervisor.instance_umask(os.umask(0o077))
    index = supervisor.process_index()
    # The credentials are settled first: a parent of --processes hands them to its
    # server processes with the other settings.
    config, credentials, generated = with_credentials(config)
    if index is None:
        taken = taken_address(config)
        if taken is not None:
            logger.error("%s", taken)  # before the storage: nothing is created
            return 1
    # As PID 1 (a container) even one server process gets a parent, which reaps
    # the orphaned instance processes handed to it.
    if index is None and (config.processes > 1 or os.getpid() == 1):
        # The parent prepares the storage first: one migration, and a store that
        # cannot be written is one line and exit 1, not processes started forever.
        storage = prepared_storage(config)
        if storage is None:
            return 1
        _say_generated(generated)
        described = storage.describe()
        storage.close()
        return supervisor.supervise(config, credentials, described, started_umask)
    stop = threading.Event()
    signals_seen = 0

    def on_signal(number: int, frame: object) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1 and index is not None:
            # A server process of --processes gets Ctrl-C from the terminal (or
            # SIGTERM from a service manager) and its parent's forwarded SIGTERM:
            # one stop. Its parent ends it with SIGKILL on a second signal.
            return
        if signals_seen > 1:
            logger.warning("second %s: exiting now", signal.Signals(number).name)
            sys.stderr.flush()
            os._exit(1)
        logger.info(
            "%s received: finishing in-flight requests (up to %.0fs)",
            signal.Signals(number).name,
            config.shutdown_grace,
        )
        stop.set()

    # Installed before anything else: a signal during start-up still stops the
    # server cleanly once it is up.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if index is not None:
        supervisor.stop_with_parent()

    # A server process that cannot start says so to its parent, which then stops
    # instead of starting it again.
    cannot_start = 1 if index is None else supervisor.CANNOT_START
    storage = prepared_storage(config, announce=index is None)
    if storage is None:
        return cannot_start
    if index is None:
        _say_generated(generated)
    sockets = supervisor.inherited_sockets()
    figures_dir = os.environ.get(supervisor.FIGURES_DIR)
    steered = {}
    if index is not None and figures_dir and supervisor.process_count() > 1:
        steered = supervisor.steer(
            sockets,
            supervisor.inherited_mailboxes(),
            Path(figures_dir),
            index,
            supervisor.process_count(),
        )
    server = InstanceServer(
        config, storage, sockets=sockets, credentials=credentials, steerings=steered
    )
    if index is not None and figures_dir:
        server.shared_figures = supervisor.SharedFigures(
            Path(figures_dir), index, steered["instance"].counters if steered else dict
        )
    try:
        server.start()
    except errors.ListenFailed as error:
        logger.error("%s", error)
        storage.close()
        return cannot_start
    identity = server.identity
    if index is None:  # else the parent said it, once for all of them
        supervisor.log_shared_facts(identity, server.address, server.management_address)
    host, port = server.address
    logger.info(
        "serving the runtara instance protocol on %s:%d (QUIC) with %d workers%s",
        host,
        port,
        config.max_concurrent,
        "; instances connect with RUNTARA_SKIP_CERT_VERIFICATION=true"
        if identity.self_signed
        else "",
    )
    # With several server processes, process 0 alone launches and maintains.
    tasks = (
        maintenance_tasks(config, storage, server, started_umask, credentials) if not index else []
    )
    if server.shared_figures is not None:
        tasks.append(PeriodicTask("figures", FIGURES_INTERVAL, server.publish_figures))
    try:
        tasks += http_tasks(config, storage, server, credentials)
    except errors.ListenFailed as error:
        server.stop()
        storage.close()
        logger.error("%s", error)
        return cannot_start
    except errors.ConfigError as error:
        server.stop()
        storage.close()
        if index is None:
            raise  # the command prints it and exits 2, as for any setting
        logger.error("%s", error)
        return cannot_start
    for task in tasks:
        task.start()
    runtime_file = None
    if index is None:  # a parent of --processes writes it for them all
        runtime_file = runtime_files.write(
            running_server(config, credentials, server, storage.describe(), tasks)
        )
    # A signal may land on another thread; Python runs its handler only once the
    # main thread runs again, so the main thread wakes often to let it.
    while not stop.wait(SIGNAL_CHECK_INTERVAL):
        pass
    if runtime_file is not None:
        runtime_files.remove(runtime_file)
    for task in tasks:
        task.stop()
    if not server.stop():
        # Workers are still blocked in storage calls past the grace period:
        # their requests were never acknowledged, and the storage's own
        # transactions keep it consistent, so leave without waiting for them.
        logger.warning("stopped with requests still running past the grace period")
        logging.shutdown()
        os._exit(0)
    storage.close()
    logger.info("stopped")
    return 0


def taken_address(config: ServerConfig) -> str | None:
    """Why the server cannot have an address it is configured with, when another
    runtara-core serves it now (the locks are taken when binding; this says it
    before anything else is done)."""
    wanted = [("udp", (config.host, config.port), "--host/--port")]
    if config.management_addr is not None:
        wanted.append(("udp", config.management_addr, "--management-addr"))
    if config.http_addr is not None:
        wanted.append(("tcp", config.http_addr, "--http-addr"))
    probe = address_locks.Claims({})
    try:
        for kind, address, setting in wanted:
            probe.claim(kind, address, setting)
    except errors.ListenFailed as error:
        return str(error)
    finally:
        probe.release()
    return None


def with_credentials(
    config: ServerConfig,
) -> tuple[ServerConfig, credentials_module.Credentials, list[str]]:
    """The server's credentials, from its settings or generated (their names), and
    the configuration that gives them to server processes of ``--processes``."""
    credentials, generated = credentials_module.configured(
        config.management_token,
        config.management_token_file,
        config.read_token,
        config.read_token_file,
    )
    settled = attrs.evolve(
        config,
        management_token=credentials.operate,
        management_token_file=None,
        read_token=credentials.read,
        read_token_file=None,
    )
    return settled, credentials, generated


def _say_generated(generated: list[str]) -> None:
    if generated:
        logger.info(
            "generated the %s credential%s: the tools of this user on this machine find "
            "them in the runtime folder %s",
            " and ".join(generated),
            "s" if len(generated) > 1 else "",
            runtime_files.folder(),
        )


def running_server(
    config: ServerConfig,
    credentials: credentials_module.Credentials,
    server: InstanceServer,
    storage: str,
    tasks: list,
) -> runtime_files.RunningServer:
    """What the runtime file of this (single-process) server says."""
    http = next((task.address for task in tasks if hasattr(task, "address")), None)
    shown = runtime_files.address_text
    return runtime_files.RunningServer(
        pid=os.getpid(),
        started=processes.start_time(os.getpid()),
        version=__version__,
        instance_addr=shown(server.address),
        management_addr=shown(server.management_address),
        http_addr=shown(http),
        fingerprint=server.identity.fingerprint,
        storage=storage,
        runs_dir=str(config.runs_dir.absolute()),
        read_token=credentials.read,
        operate_token=credentials.operate,
    )


def prepared_storage(config: ServerConfig, announce: bool = True) -> base.StorageDriver | None:
    """The driver, opened and migrated; None (the reason logged) when it cannot be.
    ``announce``: say which storage at INFO (a server process of several leaves
    that to its parent, which prepared it first)."""
    storage = selection.open_driver(config.storage, workers=config.max_concurrent)
    try:
        applied = storage.migrate()
    except errors.StorageError as error:
        logger.error("cannot prepare the storage (%s): %s", storage.describe(), error)
        storage.close()
        return None
    logger.log(
        logging.INFO if announce else logging.DEBUG,
        "runtara-core %s, storage: %s",
        __version__,
        storage.describe(),
    )
    if applied:
        logger.info("applied migrations: %s", ", ".join(applied))
    return storage


def http_tasks(
    config: ServerConfig,
    storage: base.StorageDriver,
    server: InstanceServer,
    credentials: credentials_module.Credentials,
) -> list:
    """The HTTP endpoint (metrics, probes, console) when ``--http-addr`` is set, behind
    ``credentials``. Every server process of ``--processes`` serves it, all on one
    port (SO_REUSEPORT). Raises ConfigError when its address cannot be bound."""
    if config.http_addr is None:
        return []
    from runtara.http import endpoint  # uvicorn, Jinja2 and the console load only when asked for

    several = supervisor.process_index() is not None  # then the parent holds the address
    if not several:
        server.claim("tcp", config.http_addr, "--http-addr")
    tasks = endpoint.tasks(config, storage, server, credentials, reuse_port=several)
    if not several:
        bound = next(task.address for task in tasks if hasattr(task, "address"))
        server.claim("tcp", bound, "--http-addr")
    return tasks


def _connect_addr(host: str, port: int) -> str:
    """Where a process on this machine reaches an address the server listens on."""
    connect_to = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"[{connect_to}]:{port}" if ":" in connect_to else f"{connect_to}:{port}"


def maintenance_tasks(
    config: ServerConfig,
    storage: base.StorageDriver,
    server: InstanceServer,
    child_umask: int,
    credentials: credentials_module.Credentials | None = None,
) -> list[PeriodicTask]:
    """The launcher and the scheduler, the stale-instance check and retention, as
    configured."""
    tasks = []
    host, port = server.address
    server_addr = _connect_addr(host, port)
    management = server.management_address
    if config.launcher:
        runner = launcher.Launcher(
            storage,
            launcher.Settings(
                server_addr=server_addr,
                management_addr=None if management is None else _connect_addr(*management[:2]),
                credentials=credentials,
                skip_cert_verification=server.identity.self_signed,
                runs_dir=config.runs_dir.absolute(),
                # The same name after a restart: the restarted server adopts its
                # processes at once instead of when their claims lapse.
                name=f"{socket.gethostname()}:{port}",
                max_running=config.max_running,
                lease=config.launch_lease,
                silence=config.relaunch_silent_after,
                backoff=config.restart_backoff,
                backoff_cap=config.restart_backoff_max,
                log_limit=config.log_cap,
                wake_command=config.wake_command,
                wake_grace=config.wake_grace,
                wake_batch=config.wake_batch,
                cgroups=config.instance_cgroups,
                child_umask=child_umask,
            ),
        )
        task = PeriodicTask("launcher", runner.settings.tick, runner.tick, runner.stop)
        runner.poke = task.poke
        tasks.append(task)
        # Every server that launches also fires due schedules: the store lets one of
        # them start each tick.
        firer = scheduler.Scheduler(storage)
        firer.on_started = task.poke
        tasks.append(PeriodicTask("scheduler", scheduler.INTERVAL, firer.tick))
        logger.info(
            "launcher %s: up to %d instance processes, output in %s",
            runner.id,
            config.max_running,
            runner.settings.runs_dir,
        )
        if config.wake_command:
            logger.info("waking due sleepers that nothing launches with: %s", config.wake_command)
    elif config.wake_command:
        logger.warning("--wake-command is not used: the launcher runs it (--no-launcher is set)")
    if config.stale_after:
        stale_after = config.stale_after
        tasks.append(
            PeriodicTask(
                "stale-check",
                min(30.0, stale_after / 4),
                lambda: staleness.mark_stale(storage, clock.utc_now(), stale_after),
            )
        )
        logger.info("running instances silent for %gs will be marked failed", stale_after)
    if config.retention:
        keep = dt.timedelta(seconds=config.retention)
        tasks.append(
            PeriodicTask(
                "retention",
                config.retention_interval,
                lambda: retention.prune(storage, clock.utc_now() - keep),
            )
        )
        logger.info(
            "finished instances are deleted %gs after they finish (checked every %gs)",
            config.retention,
            config.retention_interval,
        )
    return tasks
