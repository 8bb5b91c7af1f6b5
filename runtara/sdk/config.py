"""Where the SDK connects and how it behaves (upstream's RUNTARA_* variables).

:meth:`SdkConfig.from_env` reads the upstream ``RUNTARA_*`` variables, with
keyword arguments taking precedence; constructing :class:`SdkConfig` directly
uses only the arguments. A value that cannot be used raises
:class:`runtara.errors.ConfigError` naming the variable (or the argument).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from runtara import errors


def parse_address(text: str) -> tuple[str, int]:
    """``IP:port`` or ``[IPv6]:port`` as (host, port); hostnames are refused, as upstream."""
    host, colon, port = text.strip().rpartition(":")
    if not colon:
        raise ValueError(f"{text!r} is not IP:port")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r} is not IP:port ({host!r} is not an IP address)") from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not IP:port ({port!r} is not a port number)")
    return host, int(port)


def _flag(text: str) -> bool:
    return text.strip().lower() in ("true", "1")


def _whole(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number of milliseconds") from None


def _not_empty(value: str) -> None:
    if not value:
        raise ValueError("must not be empty")


def _at_least(minimum: int) -> Callable[[int], None]:
    def check(value: int) -> None:
        if value < minimum:
            raise ValueError(f"{value} is less than {minimum}")

    return check


_CHECKS: dict[str, Callable[[Any], object]] = {
    "instance_id": _not_empty,
    "tenant_id": _not_empty,
    "server_addr": parse_address,
    "server_name": _not_empty,
    "connect_timeout_ms": _at_least(1),
    "request_timeout_ms": _at_least(1),
    "signal_poll_interval_ms": _at_least(0),
    "heartbeat_interval_ms": _at_least(0),
}
"""What each checked setting must satisfy; a failed check raises ValueError."""


def _validate(instance: object, attribute: attrs.Attribute, value: Any) -> None:
    try:
        _CHECKS[attribute.name](value)
    except ValueError as error:
        raise errors.ConfigError(f"{attribute.name}: {error}") from None


VARIABLES: tuple[tuple[str, str, Callable[[str], Any]], ...] = (
    ("instance_id", "RUNTARA_INSTANCE_ID", str.strip),
    ("tenant_id", "RUNTARA_TENANT_ID", str.strip),
    ("server_addr", "RUNTARA_SERVER_ADDR", str.strip),
    ("server_name", "RUNTARA_SERVER_NAME", str.strip),
    ("skip_cert_verification", "RUNTARA_SKIP_CERT_VERIFICATION", _flag),
    ("connect_timeout_ms", "RUNTARA_CONNECT_TIMEOUT_MS", _whole),
    ("request_timeout_ms", "RUNTARA_REQUEST_TIMEOUT_MS", _whole),
    ("signal_poll_interval_ms", "RUNTARA_SIGNAL_POLL_INTERVAL_MS", _whole),
    ("heartbeat_interval_ms", "RUNTARA_HEARTBEAT_INTERVAL_MS", _whole),
    ("checkpoint_id", "RUNTARA_CHECKPOINT_ID", str.strip),
)
"""(field, environment variable, parser) of every setting :meth:`SdkConfig.from_env` reads."""

REQUIRED = ("instance_id", "tenant_id")


@attrs.frozen
class SdkConfig:
    """Settings of one instance's connection to runtara-core."""

    instance_id: str = attrs.field(validator=_validate)
    """RUNTARA_INSTANCE_ID (required)."""
    tenant_id: str = attrs.field(validator=_validate)
    """RUNTARA_TENANT_ID (required)."""
    server_addr: str = attrs.field(default="127.0.0.1:8001", validator=_validate)
    """RUNTARA_SERVER_ADDR: the server's ``IP:port``."""
    server_name: str = attrs.field(default="localhost", validator=_validate)
    """RUNTARA_SERVER_NAME: the TLS server name (SNI) to ask for."""
    skip_cert_verification: bool = False
    """RUNTARA_SKIP_CERT_VERIFICATION (``true`` or ``1``): accept any certificate,
    as needed for the server's default self-signed one."""
    connect_timeout_ms: int = attrs.field(default=10_000, validator=_validate)
    """RUNTARA_CONNECT_TIMEOUT_MS: how long a QUIC handshake may take."""
    request_timeout_ms: int = attrs.field(default=30_000, validator=_validate)
    """RUNTARA_REQUEST_TIMEOUT_MS: how long a reply may take (a sleep's reply: this
    much after its duration)."""
    signal_poll_interval_ms: int = attrs.field(default=1_000, validator=_validate)
    """RUNTARA_SIGNAL_POLL_INTERVAL_MS: at most one signal poll per interval reaches the server."""
    heartbeat_interval_ms: int = attrs.field(default=30_000, validator=_validate)
    """RUNTARA_HEARTBEAT_INTERVAL_MS: background heartbeat period once registered (0: none)."""
    checkpoint_id: str | None = None
    """RUNTARA_CHECKPOINT_ID: set when the instance is relaunched to resume; registration
    names it."""

    @property
    def address(self) -> tuple[str, int]:
        """The server as (host, port)."""
        return parse_address(self.server_addr)

    @property
    def request_timeout(self) -> float:
        return self.request_timeout_ms / 1000

    @property
    def connect_timeout(self) -> float:
        return self.connect_timeout_ms / 1000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> SdkConfig:
        """The configuration from the ``RUNTARA_*`` variables of ``environ``
        (default ``os.environ``); keyword arguments win over variables.

        An empty variable counts as unset. Raises ConfigError naming the variable
        whose value is unusable, or the required variable that is missing.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field, variable, parse in VARIABLES:
            raw = environ.get(variable, "")
            if field in overrides or not raw.strip():
                continue
            try:
                values[field] = parse(raw)
                _CHECKS.get(field, lambda value: None)(values[field])
            except ValueError as error:
                raise errors.ConfigError(f"{variable}={raw!r}: {error}") from None
        values.update(overrides)
        missing = [v for field, v, _ in VARIABLES if field in REQUIRED and field not in values]
        if missing:
            raise errors.ConfigError(f"required and not set: {', '.join(missing)}")
        return cls(**values)
