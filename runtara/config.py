"""Settings: one table feeds the command line, the environment and the docs.

Each setting is read from its flag first, then its environment variable (the
upstream ``RUNTARA_*`` names where upstream has one), then its default. A value
that does not parse is a :class:`runtara.errors.ConfigError` naming both the
flag and the variable.
"""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from runtara import errors

MiB = 1024 * 1024


def _whole(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip().replace("_", ""))
        except ValueError:
            raise ValueError(f"{raw!r} is not a whole number") from None
        if value < minimum or (maximum is not None and value > maximum):
            bounds = (
                f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
            )
            raise ValueError(f"{value} is out of range ({bounds})")
        return value

    return parse


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not a number of seconds") from None
    if not value >= 0:
        raise ValueError(f"{raw!r} must be zero or more seconds")
    return value


def _host(raw: str) -> str:
    value = raw.strip().strip("[]")
    if value == "localhost":
        return "127.0.0.1"
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{raw!r} is not an IP address") from None
    return value


def address(raw: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8002`` for IPv6)."""
    host, separator, port = raw.strip().rpartition(":")
    if not separator or not host:
        raise ValueError(f"{raw!r} is not HOST:PORT")
    return _host(host), _whole(0, 65535)(port)


def duration(raw: str) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``12h`` or ``30d``."""
    text = raw.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    scale = units.get(text[-1:], None)
    number = text[:-1] if scale else text
    try:
        value = float(number) * (scale or 1)
    except ValueError:
        raise ValueError(f"{raw!r} is not a duration such as 90s, 15m, 12h or 30d") from None
    if not value > 0:
        raise ValueError(f"{raw!r} must be a positive duration")
    return value


def text(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw.strip()


def _path(raw: str) -> Path:
    return Path(text(raw)).expanduser()


def _log_level(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("debug", "info", "warning", "error"):
        raise ValueError(f"{raw!r} is not one of debug, info, warning, error")
    return value


@attrs.frozen
class Setting:
    name: str
    """The field of the configuration class, which holds the default."""
    flag: str
    env: str | None
    parse: Callable[[str], Any]
    help: str
    metavar: str = "VALUE"


def describe(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, int) and value >= MiB and value % MiB == 0:
        return f"{value} ({value // MiB} MiB)"
    return str(value)


STORAGE_SETTINGS = (
    Setting(
        "driver",
        "--driver",
        "RUNTARA_DRIVER",
        text,
        "storage driver name (see `runtara-core drivers`); without it the database URL's "
        "scheme picks the driver, and without a URL it is sqlite",
        "NAME",
    ),
    Setting(
        "database_url",
        "--database-url",
        "RUNTARA_DATABASE_URL",
        text,
        "database URL for the driver (sqlite: a file path or sqlite:PATH; "
        "default sqlite file runtara.db in the working directory)",
        "URL",
    ),
)

SERVER_SETTINGS = STORAGE_SETTINGS + (
    Setting(
        "host",
        "--host",
        "RUNTARA_QUIC_HOST",
        _host,
        "IP address to listen on (the protocol has no authentication: expose it on purpose)",
        "ADDRESS",
    ),
    Setting(
        "port",
        "--port",
        "RUNTARA_QUIC_PORT",
        _whole(0, 65535),
        "UDP port of the instance protocol (0 picks a free one)",
        "PORT",
    ),
    Setting(
        "max_concurrent",
        "--max-concurrent",
        "RUNTARA_MAX_CONCURRENT_INSTANCES",
        _whole(1, 1024),
        "worker threads running requests at once",
        "N",
    ),
    Setting(
        "max_pending",
        "--max-pending",
        "RUNTARA_MAX_PENDING_REQUESTS",
        _whole(0),
        "requests parked while every worker is busy; past this, requests are "
        "answered with an OVERLOADED error",
        "N",
    ),
    Setting(
        "shutdown_grace",
        "--shutdown-grace",
        "RUNTARA_SHUTDOWN_GRACE_SECONDS",
        _seconds,
        "on SIGINT/SIGTERM, how long in-flight requests may take to finish",
        "SECONDS",
    ),
    Setting(
        "tls_cert",
        "--tls-cert",
        "RUNTARA_TLS_CERT",
        _path,
        "PEM certificate (chain) to serve instead of a fresh self-signed one",
        "FILE",
    ),
    Setting(
        "tls_key", "--tls-key", "RUNTARA_TLS_KEY", _path, "PEM private key of --tls-cert", "FILE"
    ),
    Setting(
        "idle_timeout_ms",
        "--quic-idle-timeout-ms",
        "RUNTARA_QUIC_IDLE_TIMEOUT_MS",
        _whole(1000),
        "QUIC idle timeout",
        "MS",
    ),
    Setting(
        "keep_alive_ms",
        "--quic-keep-alive-ms",
        "RUNTARA_QUIC_KEEP_ALIVE_MS",
        _whole(0),
        "interval of server keep-alive pings (0 disables them)",
        "MS",
    ),
    Setting(
        "max_bi_streams",
        "--quic-max-bi-streams",
        "RUNTARA_QUIC_MAX_BI_STREAMS",
        _whole(1, 1 << 20),
        "concurrent client request streams per connection",
        "N",
    ),
    Setting(
        "max_uni_streams",
        "--quic-max-uni-streams",
        "RUNTARA_QUIC_MAX_UNI_STREAMS",
        _whole(0, 1 << 20),
        "concurrent unidirectional client streams per connection "
        "(unused by the protocol; their data is ignored)",
        "N",
    ),
    Setting(
        "quic_max_data",
        "--quic-max-data",
        "RUNTARA_QUIC_MAX_DATA",
        _whole(64 * 1024),
        "QUIC flow-control window of a connection, in bytes",
        "BYTES",
    ),
    Setting(
        "quic_max_stream_data",
        "--quic-max-stream-data",
        "RUNTARA_QUIC_MAX_STREAM_DATA",
        _whole(64 * 1024),
        "QUIC flow-control window of one stream, in bytes",
        "BYTES",
    ),
    Setting(
        "max_incoming",
        "--quic-max-incoming",
        "RUNTARA_QUIC_MAX_INCOMING",
        _whole(1),
        "handshakes in progress at once; more are refused",
        "N",
    ),
    Setting(
        "max_connections",
        "--max-connections",
        "RUNTARA_QUIC_MAX_HANDLERS",
        _whole(0),
        "connections at once, 0 for no limit; more are refused",
        "N",
    ),
    Setting(
        "udp_recv_buffer",
        "--quic-udp-recv-buffer",
        "RUNTARA_QUIC_UDP_RECV_BUFFER",
        _whole(0),
        "UDP receive socket buffer in bytes (0: the OS default)",
        "BYTES",
    ),
    Setting(
        "udp_send_buffer",
        "--quic-udp-send-buffer",
        "RUNTARA_QUIC_UDP_SEND_BUFFER",
        _whole(0),
        "UDP send socket buffer in bytes (0: the OS default)",
        "BYTES",
    ),
    Setting(
        "request_timeout",
        "--request-timeout",
        "RUNTARA_REQUEST_TIMEOUT_SECONDS",
        duration,
        "a request frame must arrive whole within this time of its first byte, or its "
        "stream is dropped",
        "DURATION",
    ),
    Setting(
        "max_buffered_per_connection",
        "--max-connection-buffer",
        "RUNTARA_MAX_CONNECTION_BUFFER_BYTES",
        _whole(1024),
        "bytes of unfinished requests one connection may hold (plus 2 KiB per open "
        "stream); the stream that crosses it is refused",
        "BYTES",
    ),
    Setting(
        "max_total_buffer",
        "--max-total-buffer",
        "RUNTARA_MAX_TOTAL_BUFFER_BYTES",
        _whole(1024),
        "bytes of unfinished requests all connections together may hold (plus 2 KiB "
        "per open stream)",
        "BYTES",
    ),
    Setting(
        "max_inflight_bytes",
        "--max-inflight-bytes",
        "RUNTARA_MAX_INFLIGHT_BYTES",
        _whole(1024),
        "payload bytes of requests admitted and not yet answered; past this, requests "
        "are answered with an OVERLOADED error",
        "BYTES",
    ),
    Setting(
        "management_addr",
        "--management-addr",
        "RUNTARA_MANAGEMENT_ADDR",
        address,
        "serve the management protocol on HOST:PORT (for the tools' --server); "
        "a non-loopback address needs --management-token",
        "HOST:PORT",
    ),
    Setting(
        "management_token",
        "--management-token",
        "RUNTARA_MANAGEMENT_TOKEN",
        text,
        "token every management request must carry",
        "TOKEN",
    ),
    Setting(
        "wake_command",
        "--wake-command",
        "RUNTARA_WAKE_COMMAND",
        text,
        "shell command that relaunches an instance whose durable sleep is due "
        "(gets RUNTARA_INSTANCE_ID, RUNTARA_TENANT_ID, RUNTARA_SERVER_ADDR, "
        "RUNTARA_SKIP_CERT_VERIFICATION and RUNTARA_CHECKPOINT_ID)",
        "CMD",
    ),
    Setting(
        "wake_interval",
        "--wake-interval",
        "RUNTARA_WAKE_INTERVAL_SECONDS",
        duration,
        "how often the wake scheduler looks for due instances",
        "DURATION",
    ),
    Setting(
        "stale_after",
        "--stale-after",
        "RUNTARA_STALE_AFTER_SECONDS",
        duration,
        "mark running instances failed after this long without any request",
        "DURATION",
    ),
    Setting(
        "retention",
        "--retention",
        "RUNTARA_RETENTION",
        duration,
        "delete finished instances this long after they finished (checked every 10 minutes)",
        "DURATION",
    ),
    Setting(
        "log_level",
        "--log-level",
        "RUNTARA_LOG_LEVEL",
        _log_level,
        "debug, info, warning or error",
        "LEVEL",
    ),
)


@attrs.frozen
class StorageConfig:
    driver: str | None = None
    database_url: str | None = None


@attrs.frozen
class ServerConfig:
    driver: str | None = None
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8001
    max_concurrent: int = 32
    max_pending: int = 1024
    shutdown_grace: float = 10.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    idle_timeout_ms: int = 120_000
    keep_alive_ms: int = 15_000
    max_bi_streams: int = 1000
    max_uni_streams: int = 100
    quic_max_data: int = 64 * MiB
    quic_max_stream_data: int = 16 * MiB
    max_incoming: int = 1000
    max_connections: int = 10_000
    udp_recv_buffer: int = 2 * MiB
    udp_send_buffer: int = 2 * MiB
    request_timeout: float = 60.0
    max_buffered_per_connection: int = 256 * MiB
    max_total_buffer: int = 512 * MiB
    max_inflight_bytes: int = 256 * MiB
    management_addr: tuple[str, int] | None = None
    management_token: str | None = None
    wake_command: str | None = None
    wake_interval: float = 5.0
    stale_after: float | None = None
    retention: float | None = None
    log_level: str = "info"

    @property
    def storage(self) -> StorageConfig:
        return StorageConfig(self.driver, self.database_url)


def add_arguments(
    parser: argparse.ArgumentParser, settings: Iterable[Setting], config_class: type
) -> None:
    defaults = attrs.fields_dict(config_class)
    for setting in settings:
        source = f"env {setting.env}; " if setting.env else ""
        default = describe(defaults[setting.name].default)
        parser.add_argument(
            setting.flag,
            dest=setting.name,
            metavar=setting.metavar,
            default=None,
            help=f"{setting.help} [{source}default {default}]",
        )


def resolve(
    settings: Iterable[Setting], arguments: argparse.Namespace, environ: Mapping[str, str]
) -> dict[str, Any]:
    """The values given by flag or, failing that, environment variable."""
    values: dict[str, Any] = {}
    for setting in settings:
        raw = getattr(arguments, setting.name, None)
        if raw is None and setting.env is not None:
            raw = environ.get(setting.env)
        if raw is None:
            continue
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as error:
            names = setting.flag + (f" / {setting.env}" if setting.env else "")
            raise errors.ConfigError(f"{names}: {error}") from None
    return values


def server_config(arguments: argparse.Namespace, environ: Mapping[str, str]) -> ServerConfig:
    config = ServerConfig(**resolve(SERVER_SETTINGS, arguments, environ))
    if (config.tls_cert is None) != (config.tls_key is None):
        raise errors.ConfigError(
            "--tls-cert / RUNTARA_TLS_CERT and --tls-key / RUNTARA_TLS_KEY go together"
        )
    if (
        config.management_addr is not None
        and not ipaddress.ip_address(config.management_addr[0]).is_loopback
        and config.management_token is None
    ):
        raise errors.ConfigError(
            "--management-addr / RUNTARA_MANAGEMENT_ADDR exposes the management service beyond "
            "loopback: set --management-token / RUNTARA_MANAGEMENT_TOKEN too"
        )
    return config


def storage_config(arguments: argparse.Namespace, environ: Mapping[str, str]) -> StorageConfig:
    return StorageConfig(**resolve(STORAGE_SETTINGS, arguments, environ))
