"""Where the SDK connects and how it behaves (upstream's RUNTARA_* variables).

:meth:`SdkConfig.from_env` reads the upstream ``RUNTARA_*`` variables, with
keyword arguments taking precedence; constructing :class:`SdkConfig` directly
uses only the arguments. A value that cannot be used raises
:class:`runtara.errors.ConfigError` naming the variable (or the argument).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import attrs

from runtara import config, errors


def _server_addr(raw: str) -> str:
    config.ip_port(raw)
    return raw.strip()


SETTINGS = (
    config.Setting(
        "instance_id", None, "RUNTARA_INSTANCE_ID", config.text, "the instance this process is"
    ),
    config.Setting("tenant_id", None, "RUNTARA_TENANT_ID", config.text, "its tenant"),
    config.Setting("server_addr", None, "RUNTARA_SERVER_ADDR", _server_addr, "the server, IP:port"),
    config.Setting(
        "server_name", None, "RUNTARA_SERVER_NAME", config.text, "TLS server name (SNI)"
    ),
    config.Setting(
        "skip_cert_verification",
        None,
        "RUNTARA_SKIP_CERT_VERIFICATION",
        config.true_or_1,
        "accept any certificate",
    ),
    config.Setting(
        "connect_timeout_ms",
        None,
        "RUNTARA_CONNECT_TIMEOUT_MS",
        config.milliseconds(1),
        "QUIC handshake limit",
    ),
    config.Setting(
        "request_timeout_ms",
        None,
        "RUNTARA_REQUEST_TIMEOUT_MS",
        config.milliseconds(1),
        "reply limit of every call",
    ),
    config.Setting(
        "server_wait_ms",
        None,
        "RUNTARA_SERVER_WAIT",
        config.milliseconds(0),
        "how long calls wait for an unreachable server (0: not at all)",
    ),
    config.Setting(
        "signal_poll_interval_ms",
        None,
        "RUNTARA_SIGNAL_POLL_INTERVAL_MS",
        config.milliseconds(0),
        "at most one signal poll per interval reaches the server",
    ),
    config.Setting(
        "heartbeat_interval_ms",
        None,
        "RUNTARA_HEARTBEAT_INTERVAL_MS",
        config.milliseconds(0),
        "background heartbeat period (0: none)",
    ),
    config.Setting(
        "checkpoint_id",
        None,
        "RUNTARA_CHECKPOINT_ID",
        config.text,
        "the checkpoint a relaunched instance resumes from",
    ),
    config.Setting(
        "input_file",
        None,
        "RUNTARA_INPUT_FILE",
        config.text,
        "the file holding the instance's input (set by runtara-core's launcher)",
    ),
)
"""Every setting :meth:`SdkConfig.from_env` reads: read from the environment
only, with the parse functions the server and the tools use (durations in any
form of :func:`runtara.config.milliseconds`)."""

REQUIRED = ("instance_id", "tenant_id")

_BY_NAME = {setting.name: setting for setting in SETTINGS}


def _validate(instance: object, attribute: attrs.Attribute, value: Any) -> None:
    """An argument must be a value its variable could give."""
    try:
        _BY_NAME[attribute.name].parse(str(value))
    except ValueError as error:
        raise errors.ConfigError(f"{attribute.name}: {error}") from None


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
    server_wait_ms: int = attrs.field(default=600_000, validator=_validate)
    """RUNTARA_SERVER_WAIT: how long a call waits for a server it cannot reach (it
    stopped, restarted, or no longer answers), repeating the call meanwhile; 0: not
    at all. Milliseconds, or any duration form (``30s``, ``10m``)."""
    signal_poll_interval_ms: int = attrs.field(default=1_000, validator=_validate)
    """RUNTARA_SIGNAL_POLL_INTERVAL_MS: at most one signal poll per interval reaches the server."""
    heartbeat_interval_ms: int = attrs.field(default=30_000, validator=_validate)
    """RUNTARA_HEARTBEAT_INTERVAL_MS: background heartbeat period once registered (0: none)."""
    checkpoint_id: str | None = None
    """RUNTARA_CHECKPOINT_ID: set when the instance is relaunched to resume; registration
    names it."""
    input_file: str | None = None
    """RUNTARA_INPUT_FILE: the file holding the input the instance was started with
    (set by runtara-core's launcher)."""

    @property
    def address(self) -> tuple[str, int]:
        """The server as (host, port)."""
        return config.ip_port(self.server_addr)

    @property
    def request_timeout(self) -> float:
        return self.request_timeout_ms / 1000

    @property
    def connect_timeout(self) -> float:
        return self.connect_timeout_ms / 1000

    @property
    def server_wait(self) -> float:
        return self.server_wait_ms / 1000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> SdkConfig:
        """The configuration from the ``RUNTARA_*`` variables of ``environ``
        (default ``os.environ``); keyword arguments win over variables.

        An empty variable counts as unset. Raises ConfigError naming the variable
        whose value is unusable, or the required variable that is missing.
        """
        environ = os.environ if environ is None else environ
        from_environ = [setting for setting in SETTINGS if setting.name not in overrides]
        values = {**config.resolve(from_environ, None, environ), **overrides}
        missing = [s.env for s in SETTINGS if s.name in REQUIRED and s.name not in values]
        if missing:
            raise errors.ConfigError(f"required and not set: {', '.join(missing)}")
        return cls(**values)
