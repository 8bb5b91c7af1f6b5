"""Settings: one table feeds the command line, the environment and the docs.

Each setting is read from its flag first, then its environment variable (the
upstream ``RUNTARA_*`` names where upstream has one; an empty variable counts
as unset), then its default. A value that does not parse is a
:class:`runtara.errors.ConfigError` naming both the flag and the variable.

The server (:data:`SERVER_SETTINGS`), the operator tools
(:data:`TOOL_SETTINGS`), ``bench`` (:data:`BENCH_SETTINGS`) and the SDK
(:mod:`runtara.sdk.config`, variables only) all read their settings through
:func:`resolve` and the parse functions below, so a value means the same
wherever it is given. This module imports nothing of the server or the
storage: the SDK depends on it.
"""

from __future__ import annotations

import argparse
import decimal
import ipaddress
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from runtara import errors

MiB = 1024 * 1024

# Parse functions: each turns the text of a flag or variable into its value,
# or raises ValueError with a message that quotes the text.


def _whole(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip().replace("_", ""))
        except ValueError:
            raise ValueError(f"{raw!r} is not a whole number") from None
        if maximum is not None and not minimum <= value <= maximum:
            raise ValueError(f"{value} is out of range (from {minimum} to {maximum})")
        if value < minimum:
            raise ValueError(f"{value} is less than {minimum}")
        return value

    return parse


_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
MAX_DURATION = 100 * 365 * 86400.0
"""Seconds; longer spans overflow the clocks and timers they feed."""


def _span_ms(raw: str, bare_unit: str, example: str) -> decimal.Decimal:
    """The span ``raw`` names, in milliseconds: a number with an optional unit
    (``ms``, ``s``, ``m``, ``h``, ``d``); a bare number counts in ``bare_unit``."""
    text = raw.strip().lower()
    number = text.rstrip("smhd")
    scale = _UNIT_MS.get(text[len(number) :] or bare_unit)
    try:
        if scale is None:
            raise decimal.InvalidOperation
        value = decimal.Decimal(number.strip()) * scale
    except decimal.InvalidOperation:
        raise ValueError(f"{raw!r} is not {example}") from None
    if not value.is_finite():
        raise ValueError(f"{raw!r} is not {example}")
    if value > decimal.Decimal(MAX_DURATION * 1000):
        raise ValueError(f"{raw!r} is longer than 100 years")
    return value


_SECONDS_EXAMPLE = "a duration such as 90, 90s, 500ms, 15m, 12h or 30d"


def duration(raw: str) -> float:
    """Positive seconds from ``90`` (seconds), ``90s``, ``0.5``, ``500ms``, ``15m``,
    ``12h`` or ``30d``."""
    value = float(_span_ms(raw, "s", _SECONDS_EXAMPLE)) / 1000
    if not value > 0:
        raise ValueError(f"{raw!r} must be a positive duration")
    return value


def duration_or_zero(raw: str) -> float:
    """Like :func:`duration`, and zero is allowed."""
    value = float(_span_ms(raw, "s", _SECONDS_EXAMPLE)) / 1000
    if value < 0:
        raise ValueError(f"{raw!r} must be zero or a positive duration")
    return value


def milliseconds(minimum: int) -> Callable[[str], int]:
    """Whole milliseconds, at least ``minimum``, from ``1500`` (milliseconds, as
    in upstream's ``*_MS`` variables) or any duration form: ``1.5s``, ``2m``."""

    def parse(raw: str) -> int:
        value = _span_ms(
            raw, "ms", "a whole number of milliseconds nor a duration such as 1500ms, 1.5s or 2m"
        )
        if value != value.to_integral_value():
            raise ValueError(f"{raw!r} is not a whole number of milliseconds")
        if value < minimum:
            raise ValueError(f"{int(value)} ms is less than {minimum} ms")
        return int(value)

    return parse


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
    """``HOST:PORT`` (``[::1]:8002`` for IPv6, ``localhost`` for 127.0.0.1, port 0
    for a free one) as (host, port)."""
    host, separator, port = raw.strip().rpartition(":")
    if not separator or not host:
        raise ValueError(f"{raw!r} is not HOST:PORT")
    return _host(host), _whole(0, 65535)(port)


def address_or_off(raw: str) -> tuple[str, int] | None:
    """:func:`address`, or None for ``off``."""
    if raw.strip().lower() == "off":
        return None
    return address(raw)


def secret_file(raw: str) -> Path:
    """A file holding a secret: it must exist and be readable by its owner only
    (no group or other permissions), as ssh requires of its keys."""
    path = _path(raw)
    try:
        mode = path.stat().st_mode
    except OSError as error:
        raise ValueError(f"cannot read {raw!r}: {error.strerror}") from None
    if mode & 0o077:
        raise ValueError(
            f"{raw!r} can be read by other users (mode {mode & 0o777:o}): "
            f"make it owner-only, chmod 600 {raw}"
        )
    return path


def origin(raw: str) -> str:
    """An http:// or https:// URL's origin, as browsers write it in ``Origin``:
    ``scheme://host[:port]``, lower case, without a default port. A path other
    than ``/``, a query, a fragment or a user name is refused."""
    parts = urlsplit(raw.strip())
    example = "an origin such as https://runtara.example.com or http://10.0.0.5:8080"
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{raw!r} has a port that is not one") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{raw!r} is not {example}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(f"{raw!r} is not {example} (no path, query or user)")
    if not parts.hostname.isascii():
        raise ValueError(f"{raw!r}: give the host name in its ASCII (punycode) form")
    scheme = parts.scheme.lower()
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def ip_port(raw: str) -> tuple[str, int]:
    """``IP:port`` or ``[IPv6]:port`` as (host, port), the port from 1 to 65535;
    host names are refused, as upstream's SDK refuses them."""
    host, colon, port = raw.strip().rpartition(":")
    if not colon:
        raise ValueError(f"{raw!r} is not IP:port")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{raw!r} is not IP:port ({host!r} is not an IP address)") from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{raw!r} is not IP:port ({port!r} is not a port number)")
    return host, int(port)


def text(raw: str) -> str:
    """The text without surrounding blanks; it must not be empty."""
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw.strip()


def true_or_1(raw: str) -> bool:
    """True for ``true`` (any case) or ``1``, False for anything else, as upstream
    reads its switches."""
    return raw.strip().lower() in ("true", "1")


def switch(raw: str) -> bool:
    """On or off: ``true``/``false``, ``1``/``0``, ``yes``/``no``, ``on``/``off``."""
    value = raw.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{raw!r} is not on or off (true/false, 1/0, yes/no, on/off)")


def _path(raw: str) -> Path:
    return Path(text(raw)).expanduser()


def _log_level(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("debug", "info", "warning", "error"):
        raise ValueError(f"{raw!r} is not one of debug, info, warning, error")
    return value


def _log_format(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("text", "json"):
        raise ValueError(f"{raw!r} is not text or json")
    return value


def fingerprint(raw: str) -> str:
    """A SHA-256 certificate fingerprint: 64 hex digits in any case, the colons
    between pairs optional; returned as the server logs it (``3A:91:...``)."""
    digits = raw.strip().replace(":", "").upper()
    if len(digits) != 64 or any(digit not in "0123456789ABCDEF" for digit in digits):
        raise ValueError(
            f"{raw!r} is not a SHA-256 fingerprint (64 hex digits, as the server logs it: "
            "3A:91:...)"
        )
    return ":".join(digits[index : index + 2] for index in range(0, 64, 2))


def _certificates_file(raw: str) -> Path:
    """A readable file holding at least one PEM certificate."""
    path = _path(raw)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ValueError(f"cannot read {raw!r}: {error.strerror}") from None
    from cryptography import x509  # only the tools that verify a server need it

    try:
        x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ValueError(f"{raw!r} holds no PEM certificate") from None
    return path


@attrs.frozen
class Setting:
    name: str
    """The field of the configuration class, which holds the default."""
    flag: str | None
    """The command-line flag; None for a setting read from the environment only
    (the SDK's)."""
    env: str | None
    parse: Callable[[str], Any]
    """Text to value; raises ValueError with a message quoting the text."""
    help: str
    metavar: str = "VALUE"
    given: str | None = None
    """For a flag that takes no value: the text it stands for (``--no-launcher``
    gives ``"off"``)."""

    def read(self, raw: str) -> Any:
        """The value of ``raw``; a ConfigError naming the flag and the variable
        (without a flag: the variable and the text) when it does not parse."""
        try:
            return self.parse(raw)
        except ValueError as error:
            if self.flag is None:
                source = f"{self.env}={raw!r}"
            else:
                source = self.flag + (f" / {self.env}" if self.env else "")
            raise errors.ConfigError(f"{source}: {error}") from None


def describe(value: Any, metavar: str = "VALUE") -> str:
    """A default as ``--help`` shows it."""
    if value is None:
        return "none"
    if isinstance(value, attrs.Factory):
        value = value.factory()
    if metavar == "DURATION":
        return f"{value:g}s"
    if isinstance(value, int) and value >= MiB and value % MiB == 0:
        return f"{value} ({value // MiB} MiB)"
    return str(value)


RUNS_DIR = Setting(
    "runs_dir",
    "--runs-dir",
    "RUNTARA_RUNS_DIR",
    _path,
    "folder of the launched instances' run folders (output logs, input)",
    "DIR",
)

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

MOST_PROCESSES = 64
"""At most this many server processes (connection ids name the process in a byte)."""

PROCESSES = Setting(
    "processes",
    "--processes",
    "RUNTARA_PROCESSES",
    _whole(1, MOST_PROCESSES),
    "server processes sharing the UDP port, each with its own event loop, worker "
    "pool and storage connections, new clients steered to the one with the fewest; "
    "by default one per core this process may use (its CPU affinity and cgroup "
    "quota), at most 64",
    "N",
)


def default_processes() -> int:
    """``--processes`` when not given: one per usable core. The server's work per
    request (QUIC, protobuf, the handler) runs on its event-loop thread, holding
    the interpreter lock: one process uses about one core, and only more
    processes use more (see the README's Performance section)."""
    return max(1, min(MOST_PROCESSES, usable_cores()))


def usable_cores(
    cgroups: Path = Path("/sys/fs/cgroup"), membership: Path = Path("/proc/self/cgroup")
) -> int:
    """The cores this process may run on (its CPU affinity), fewer when a cgroup v2
    CPU quota (``cpu.max``, as a container's ``--cpus`` sets) of its group or a
    parent group allows less: the quota in cores, rounded up."""
    cores = len(os.sched_getaffinity(0))
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        return cores
    group = next((line[3:] for line in lines if line.startswith("0::")), None)
    if group is None:
        return cores
    folder = cgroups / group.lstrip("/")
    while True:
        try:
            quota, period = (folder / "cpu.max").read_text().split()
        except (OSError, ValueError):
            quota = "max"
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))
        if folder == cgroups or cgroups not in folder.parents:
            return cores
        folder = folder.parent


MAX_CONCURRENT = Setting(
    "max_concurrent",
    "--max-concurrent",
    "RUNTARA_MAX_CONCURRENT_INSTANCES",
    _whole(1, 1024),
    "worker threads running requests at once",
    "N",
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
    PROCESSES,
    MAX_CONCURRENT,
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
        duration_or_zero,
        "on SIGINT/SIGTERM, how long in-flight requests may take to finish",
        "DURATION",
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
        milliseconds(1000),
        "QUIC idle timeout (a bare number is milliseconds)",
        "MS",
    ),
    Setting(
        "keep_alive_ms",
        "--quic-keep-alive-ms",
        "RUNTARA_QUIC_KEEP_ALIVE_MS",
        milliseconds(0),
        "interval of server keep-alive pings (a bare number is milliseconds; 0 disables them)",
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
        address_or_off,
        "the management protocol's HOST:PORT (the tools' --server; the tools on this "
        "machine find it in the runtime file); off turns it off",
        "HOST:PORT",
    ),
    Setting(
        "management_token",
        "--management-token",
        "RUNTARA_MANAGEMENT_TOKEN",
        text,
        "the operate credential (start, stop, retry, signals, and reading); other users "
        "see a flag in the process list: prefer the variable or --management-token-file; "
        "generated when not given",
        "TOKEN",
    ),
    Setting(
        "management_token_file",
        "--management-token-file",
        "RUNTARA_MANAGEMENT_TOKEN_FILE",
        secret_file,
        "a file (owner-only) holding the operate credential",
        "FILE",
    ),
    Setting(
        "read_token",
        "--read-token",
        "RUNTARA_READ_TOKEN",
        text,
        "the read credential (metrics, the console's pages, inspection); prefer the "
        "variable or --read-token-file; generated when not given",
        "TOKEN",
    ),
    Setting(
        "read_token_file",
        "--read-token-file",
        "RUNTARA_READ_TOKEN_FILE",
        secret_file,
        "a file (owner-only) holding the read credential",
        "FILE",
    ),
    Setting(
        "http_addr",
        "--http-addr",
        "RUNTARA_HTTP_ADDR",
        address,
        "serve HTTP on HOST:PORT: /metrics (Prometheus), /healthz, /readyz and the web "
        "console, behind the read and operate credentials",
        "HOST:PORT",
    ),
    Setting(
        "public_url",
        "--public-url",
        "RUNTARA_PUBLIC_URL",
        origin,
        "the web console's address as browsers reach it, scheme://host[:port] (behind an "
        "HTTPS proxy: https://...); actions must come from pages of it, and with https the "
        "session cookie is Secure; unset: http:// and the request's Host",
        "URL",
    ),
    Setting(
        "wake_command",
        "--wake-command",
        "RUNTARA_WAKE_COMMAND",
        text,
        "shell command the launcher runs for a due sleeper that nothing launches (one not "
        "started with `runtara-core start`); it gets RUNTARA_INSTANCE_ID, RUNTARA_TENANT_ID, "
        "RUNTARA_SERVER_ADDR, RUNTARA_SKIP_CERT_VERIFICATION and RUNTARA_CHECKPOINT_ID",
        "CMD",
    ),
    Setting(
        "wake_grace",
        "--wake-grace",
        "RUNTARA_WAKE_GRACE_SECONDS",
        duration_or_zero,
        "a sleep is due this long after its wake time (a sleep held by a live "
        "connection wakes through its own timer first)",
        "DURATION",
    ),
    Setting(
        "wake_batch",
        "--wake-batch",
        "RUNTARA_WAKE_BATCH",
        _whole(1, 10_000),
        "due sleepers the launcher gives the wake command per tick",
        "N",
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
        "delete finished instances this long after they finished (checked every "
        "--retention-interval)",
        "DURATION",
    ),
    Setting(
        "retention_interval",
        "--retention-interval",
        "RUNTARA_RETENTION_INTERVAL_SECONDS",
        duration,
        "with --retention: how often finished instances are looked for",
        "DURATION",
    ),
    Setting(
        "launcher",
        "--no-launcher",
        "RUNTARA_LAUNCHER",
        switch,
        "do not run the launcher, which starts, watches and relaunches the instances "
        "started with `runtara-core start` (RUNTARA_LAUNCHER=off does the same)",
        "ON|OFF",
        given="off",
    ),
    Setting(
        "max_running",
        "--max-running",
        "RUNTARA_MAX_RUNNING",
        _whole(1, 100_000),
        "instance processes the launcher runs at once; more wait, oldest due first",
        "N",
    ),
    RUNS_DIR,
    Setting(
        "restart_backoff",
        "--restart-backoff",
        "RUNTARA_RESTART_BACKOFF",
        duration,
        "wait before relaunching an instance whose attempt failed; it doubles with each "
        "further failure in a row without progress, with jitter",
        "DURATION",
    ),
    Setting(
        "restart_backoff_max",
        "--restart-backoff-max",
        "RUNTARA_RESTART_BACKOFF_MAX",
        duration,
        "the longest wait between two attempts",
        "DURATION",
    ),
    Setting(
        "relaunch_silent_after",
        "--relaunch-silent-after",
        "RUNTARA_RELAUNCH_SILENT_AFTER",
        duration,
        "a launched instance that sent nothing for this long is killed and relaunched",
        "DURATION",
    ),
    Setting(
        "launch_lease",
        "--launch-lease",
        "RUNTARA_LAUNCH_LEASE",
        duration,
        "how long a launcher's claim on a process holds unless renewed; after a "
        "server dies, its instances are looked after again this long later",
        "DURATION",
    ),
    Setting(
        "instance_cgroups",
        "--instance-cgroups",
        "RUNTARA_INSTANCE_CGROUPS",
        switch,
        "give each attempt of an instance a cgroup v2 group of its own, when the server's "
        "cgroup lets it make one, so that stopping it ends everything it started; off: "
        "its process group and session, which a daemon that leaves both escapes",
        "ON|OFF",
    ),
    Setting(
        "log_cap",
        "--log-cap",
        "RUNTARA_LOG_CAP_BYTES",
        _whole(4096),
        "size at which an instance's stdout or stderr log moves to <name>.1",
        "BYTES",
    ),
    Setting(
        "log_level",
        "--log-level",
        "RUNTARA_LOG_LEVEL",
        _log_level,
        "debug, info, warning or error",
        "LEVEL",
    ),
    Setting(
        "log_format",
        "--log-format",
        "RUNTARA_LOG_FORMAT",
        _log_format,
        "text (for people) or json (one JSON object a line, for log collectors)",
        "FORMAT",
    ),
)

TOOL_SETTINGS = STORAGE_SETTINGS + (
    Setting(
        "server",
        "--server",
        "RUNTARA_MANAGEMENT_ADDR",
        address,
        "act through the management service at HOST:PORT (without it, and without "
        "--database-url, the tools act through the server running on this machine)",
        "HOST:PORT",
    ),
    Setting(
        "token",
        "--token",
        "RUNTARA_MANAGEMENT_TOKEN",
        text,
        "a credential of the server named by --server (the operate one to act); prefer "
        "the variable or --token-file",
        "TOKEN",
    ),
    Setting(
        "token_file",
        "--token-file",
        "RUNTARA_MANAGEMENT_TOKEN_FILE",
        secret_file,
        "a file (owner-only) holding that credential",
        "FILE",
    ),
    RUNS_DIR,
    Setting(
        "timeout",
        "--timeout",
        "RUNTARA_MANAGEMENT_TIMEOUT_SECONDS",
        duration,
        "with --server: how long connecting, and then each request, may take",
        "DURATION",
    ),
    Setting(
        "fingerprint",
        "--fingerprint",
        "RUNTARA_MANAGEMENT_FINGERPRINT",
        fingerprint,
        "with --server: the SHA-256 fingerprint the server's certificate must have "
        "(the server logs it at start)",
        "SHA256",
    ),
    Setting(
        "ca_file",
        "--ca-file",
        "RUNTARA_MANAGEMENT_CA_FILE",
        _certificates_file,
        "with --server: PEM certificates the server's certificate must verify against",
        "FILE",
    ),
    Setting(
        "server_name",
        "--server-name",
        "RUNTARA_MANAGEMENT_SERVER_NAME",
        text,
        "with --ca-file: the name the server's certificate must be issued for",
        "NAME",
    ),
    Setting(
        "insecure_skip_verify",
        "--insecure-skip-verify",
        "RUNTARA_MANAGEMENT_INSECURE_SKIP_VERIFY",
        switch,
        "with --server: talk to the server without checking its certificate, and send "
        "it the token all the same (anyone able to answer in its place can take the token)",
        "ON|OFF",
        given="on",
    ),
)
"""The operator tools' settings: where to act (storage or server) and how."""

BENCH_SETTINGS = STORAGE_SETTINGS + (MAX_CONCURRENT,)
"""The settings of the server ``bench`` starts (the server's own settings)."""


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
    processes: int = attrs.field(factory=default_processes)
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
    management_addr: tuple[str, int] | None = ("127.0.0.1", 0)
    management_token: str | None = None
    management_token_file: Path | None = None
    read_token: str | None = None
    read_token_file: Path | None = None
    http_addr: tuple[str, int] | None = None
    public_url: str | None = None
    wake_command: str | None = None
    wake_grace: float = 5.0
    wake_batch: int = 10
    stale_after: float | None = None
    retention: float | None = None
    retention_interval: float = 600.0
    launcher: bool = True
    max_running: int = 16
    runs_dir: Path = Path("runtara-runs")
    restart_backoff: float = 1.0
    restart_backoff_max: float = 60.0
    relaunch_silent_after: float = 90.0
    launch_lease: float = 15.0
    instance_cgroups: bool = True
    log_cap: int = 10 * MiB
    log_level: str = "info"
    log_format: str = "text"

    @property
    def storage(self) -> StorageConfig:
        return StorageConfig(self.driver, self.database_url)


@attrs.frozen
class ToolConfig:
    """Where the tools act: through ``server``, or on the store the storage settings
    name (``names_storage``), or else through the server running on this machine."""

    driver: str | None = None
    database_url: str | None = None
    server: tuple[str, int] | None = None
    """The management service to act through."""
    token: str | None = None
    token_file: Path | None = None
    runs_dir: Path = Path("runtara-runs")
    """Where the launched instances' logs are (without --server)."""
    timeout: float = 10.0
    fingerprint: str | None = None
    """The pinned SHA-256 fingerprint of the server's certificate."""
    ca_file: Path | None = None
    """PEM certificates the server's certificate must verify against."""
    server_name: str = "localhost"
    """The name the server's certificate must be issued for (with ``ca_file``)."""
    insecure_skip_verify: bool = False
    """Talk to the server (and send it the token) without checking its certificate."""

    @property
    def verifies_server(self) -> bool:
        return self.fingerprint is not None or self.ca_file is not None

    @property
    def storage(self) -> StorageConfig:
        return StorageConfig(self.driver, self.database_url)

    @property
    def names_storage(self) -> bool:
        """The driver or the database URL is given: the tools open that store."""
        return self.driver is not None or self.database_url is not None


def add_arguments(
    parser: argparse.ArgumentParser, settings: Iterable[Setting], config_class: type
) -> None:
    """A flag per setting (text, parsed later by :func:`resolve`), its help naming
    the variable and ``config_class``'s default."""
    defaults = attrs.fields_dict(config_class)
    for setting in settings:
        source = f"env {setting.env}; " if setting.env else ""
        default = describe(defaults[setting.name].default, setting.metavar)
        help_text = f"{setting.help} [{source}default {default}]"
        if setting.given is not None:
            parser.add_argument(
                setting.flag,
                dest=setting.name,
                action="store_const",
                const=setting.given,
                default=None,
                help=help_text,
            )
        else:
            parser.add_argument(
                setting.flag,
                dest=setting.name,
                metavar=setting.metavar,
                default=None,
                help=help_text,
            )


def to_environment(settings: Iterable[Setting], values: object) -> dict[str, str]:
    """The variables that give another process the same ``values`` (a configuration
    object): each setting's text, as its parse function reads it back."""
    environment = {}
    for setting in settings:
        value = getattr(values, setting.name)
        if value is None or setting.env is None:
            continue
        if isinstance(value, bool):
            text = "on" if value else "off"
        elif isinstance(value, tuple):
            host, port = value
            text = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        else:
            text = str(value)
        environment[setting.env] = text
    return environment


def resolve(
    settings: Iterable[Setting],
    arguments: argparse.Namespace | None,
    environ: Mapping[str, str],
) -> dict[str, Any]:
    """The values given by flag or, failing that, by environment variable (an
    empty one counts as unset); a setting given by neither is left out, so that
    its default applies. Raises ConfigError (see :meth:`Setting.read`)."""
    values: dict[str, Any] = {}
    for setting in settings:
        raw = getattr(arguments, setting.name, None)
        if raw is None and setting.env is not None and environ.get(setting.env, "").strip():
            raw = environ[setting.env]
        if raw is not None:
            values[setting.name] = setting.read(raw)
    return values


def server_config(arguments: argparse.Namespace, environ: Mapping[str, str]) -> ServerConfig:
    config = ServerConfig(**resolve(SERVER_SETTINGS, arguments, environ))
    if (config.tls_cert is None) != (config.tls_key is None):
        raise errors.ConfigError(
            "--tls-cert / RUNTARA_TLS_CERT and --tls-key / RUNTARA_TLS_KEY go together"
        )
    for value, file, names in (
        (config.management_token, config.management_token_file, "--management-token"),
        (config.read_token, config.read_token_file, "--read-token"),
    ):
        if value is not None and file is not None:
            raise errors.ConfigError(f"{names} and {names}-file give the same credential: give one")
    return config


def secrets_on_command_line(arguments: argparse.Namespace) -> list[str]:
    """Warnings for the secrets given as flags, which every user of the machine
    sees in the process list, each saying where to put it instead."""
    warnings = []
    for name, flag, env in (
        ("management_token", "--management-token", "RUNTARA_MANAGEMENT_TOKEN"),
        ("read_token", "--read-token", "RUNTARA_READ_TOKEN"),
    ):
        if getattr(arguments, name, None) is not None:
            warnings.append(
                f"{flag} on the command line is visible to every user of this machine "
                f"(ps): give it in {env} or with {flag}-file instead"
            )
    url = getattr(arguments, "database_url", None)
    if url is not None and _has_password(url):
        warnings.append(
            "--database-url on the command line holds a password visible to every user of "
            "this machine (ps): give the URL in RUNTARA_DATABASE_URL, or the password in "
            "PGPASSWORD or ~/.pgpass"
        )
    return warnings


def _has_password(url: str) -> bool:
    """Whether a database URL (URI or key=value form) carries a password."""
    if "password=" in url:
        return True
    _, separator, rest = url.partition("://")
    credentials = rest.split("@", 1)[0] if separator and "@" in rest else ""
    return ":" in credentials


def storage_config(arguments: argparse.Namespace, environ: Mapping[str, str]) -> StorageConfig:
    return StorageConfig(**resolve(STORAGE_SETTINGS, arguments, environ))


def tool_config(arguments: argparse.Namespace, environ: Mapping[str, str]) -> ToolConfig:
    """The tools' settings. With ``--server``, a token is sent only to a server
    whose certificate is checked (``--fingerprint`` or ``--ca-file``) or when
    ``--insecure-skip-verify`` says so; otherwise, and for contradicting
    options, a ConfigError says what to set."""
    config = ToolConfig(**resolve(TOOL_SETTINGS, arguments, environ))
    if config.token_file is not None:
        if config.token is not None:
            raise errors.ConfigError("--token and --token-file give the same credential: give one")
        try:
            token = config.token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise errors.ConfigError(f"--token-file {config.token_file}: {error}") from None
        config = attrs.evolve(config, token=token, token_file=None)
    if config.server is None:
        return config
    if config.insecure_skip_verify and config.verifies_server:
        raise errors.ConfigError(
            "--insecure-skip-verify / RUNTARA_MANAGEMENT_INSECURE_SKIP_VERIFY contradicts "
            "--fingerprint / RUNTARA_MANAGEMENT_FINGERPRINT and --ca-file / "
            "RUNTARA_MANAGEMENT_CA_FILE: give one or the other"
        )
    if config.token is not None and not (config.verifies_server or config.insecure_skip_verify):
        raise errors.ConfigError(
            "--token / RUNTARA_MANAGEMENT_TOKEN is sent only to a server whose certificate "
            "is checked: set --fingerprint / RUNTARA_MANAGEMENT_FINGERPRINT (the SHA-256 "
            "fingerprint the server logs at start) or --ca-file / RUNTARA_MANAGEMENT_CA_FILE, "
            "or --insecure-skip-verify / RUNTARA_MANAGEMENT_INSECURE_SKIP_VERIFY to send it "
            "unchecked"
        )
    return config
