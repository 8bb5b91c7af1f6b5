"""The HTTP endpoint of a running server, put together (``--http-addr``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Protocol

from runtara import errors, metrics
from runtara.admin.local import LocalAdmin
from runtara.background import PeriodicTask
from runtara.config import ServerConfig
from runtara.credentials import Credentials
from runtara.handlers.services import Services
from runtara.http.access import Access
from runtara.http.app import HttpApp
from runtara.http.console import Console
from runtara.http.probes import Readiness
from runtara.http.server import HttpServer
from runtara.storage import base

logger = logging.getLogger("runtara")

SAMPLE_INTERVAL = 1.0
"""Seconds between two samplings of a server process's figures for its siblings."""


class ServedServer(Protocol):
    """What the endpoint needs of the running server (an ``InstanceServer``)."""

    address: tuple[str, int] | None
    services: Services

    def stats(self) -> Mapping[str, float]: ...


def tasks(
    config: ServerConfig,
    storage: base.StorageDriver,
    server: ServedServer,
    credentials: Credentials,
    *,
    reuse_port: bool = False,
) -> list[HttpServer | PeriodicTask]:
    """The HTTP server on ``config.http_addr`` (bound now), behind ``credentials``,
    and, with several server processes, the task sampling this process's figures;
    each to be started and stopped with the server's other tasks.

    Raises :class:`runtara.errors.ConfigError` when the address cannot be bound,
    or when the metrics' shared folder is unusable.
    """
    health = server.services.storage_health
    runs_dir = config.runs_dir.absolute()
    measured = metrics.setup(
        figures=server.stats,
        storage_healthy=lambda: health.problem is None,
        storage=storage,
    )
    app = HttpApp(
        access=Access(credentials, public_origin=config.public_url),
        metrics=measured,
        readiness=Readiness(storage, health, lambda: _answers(server)),
        console=Console(LocalAdmin(storage, runs_dir=runs_dir), runs_dir=runs_dir),
    )
    host, port = config.http_addr
    try:
        http_server = HttpServer(host, port, app.handle, reuse_port=reuse_port)
    except OSError as error:
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise errors.ConfigError(
            f"cannot listen on {shown} (TCP, --http-addr / RUNTARA_HTTP_ADDR): "
            f"{(error.strerror or str(error)).lower()}"
        ) from None
    shown = f"[{http_server.address[0]}]" if ":" in host else http_server.address[0]
    logger.info(
        "serving HTTP on %s:%d: /metrics, /healthz, /readyz and the console at /instances "
        "(read and operate credentials%s)",
        shown,
        http_server.address[1],
        f"; the console's origin is {config.public_url}" if config.public_url else "",
    )
    started: list[HttpServer | PeriodicTask] = [http_server]
    if measured.folder is not None:
        started.append(PeriodicTask("metrics", SAMPLE_INTERVAL, measured.sample))
    return started


def _answers(server: ServedServer) -> bool:
    """The QUIC port is bound and its event loop answers (asking it for the
    figures goes through the loop thread; a loop that hangs makes the probe
    time out)."""
    if server.address is None:
        return False
    server.stats()
    return True
