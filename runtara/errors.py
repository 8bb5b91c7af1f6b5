"""Exceptions shared by the server, the drivers and the tools.

Instance-protocol failures carry the texts upstream sends in ``RpcError.message``;
the wire *code* depends on the operation, not on the exception, and is chosen
by :mod:`runtara.handlers`.
"""

from __future__ import annotations


class RuntaraError(Exception):
    """Root of every error raised on purpose by runtara-core."""


class ConfigError(RuntaraError):
    """A setting has a value that cannot be used."""


class ListenFailed(RuntaraError):
    """A port the server should serve on cannot be bound; the message says why."""


# --- requests -------------------------------------------------------------


class RequestError(RuntaraError):
    """A request cannot be carried out; the message is what the client reads."""


class ValidationError(RequestError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"Validation error for '{field}': {message}")
        self.field = field


class InstanceNotFound(RequestError):
    def __init__(self, instance_id: str) -> None:
        super().__init__(f"Instance '{instance_id}' not found")
        self.instance_id = instance_id


class InvalidInstanceState(RequestError):
    def __init__(self, instance_id: str, expected: str, actual: str) -> None:
        super().__init__(
            f"Instance '{instance_id}' is in invalid state: expected '{expected}', got '{actual}'"
        )
        self.instance_id = instance_id
        self.actual = actual


class InstanceFinished(RequestError):
    """The instance is completed, failed or cancelled, and those states are final."""

    def __init__(self, instance_id: str, status: str) -> None:
        super().__init__(f"Instance '{instance_id}' is already {status} (terminal state)")
        self.instance_id = instance_id
        self.status = status


class TenantMismatch(RequestError):
    def __init__(self, instance_id: str) -> None:
        super().__init__(f"Instance '{instance_id}' belongs to another tenant")
        self.instance_id = instance_id


class Superseded(RequestError):
    """The instance was registered again after this process registered it: the
    newest registration wins, and this process must stop."""

    def __init__(self, instance_id: str, yours: int, current: int) -> None:
        super().__init__(
            f"Instance '{instance_id}' was registered again by another process "
            f"(registration {current}; this process holds registration {yours}): "
            "this process is superseded and must stop"
        )
        self.instance_id = instance_id
        self.yours = yours
        self.current = current


class RegistrationRefused(RequestError):
    """The server refused to register the instance; the message says why.

    The server answers it in-band (``success=false``); the SDK raises it again
    from that answer.
    """


class CheckpointNotFound(RequestError):
    def __init__(self, checkpoint_id: str) -> None:
        super().__init__(f"Checkpoint '{checkpoint_id}' not found")
        self.checkpoint_id = checkpoint_id


# --- storage --------------------------------------------------------------


class StorageError(RuntaraError):
    """The storage failed; nothing of the failed transaction was kept."""


class StorageUnavailable(StorageError):
    """The storage cannot be reached right now (server down, pool exhausted, disk gone)."""


class MigrationError(StorageError):
    """The database schema cannot be brought up to date safely."""


class DriverError(RuntaraError):
    """A storage driver cannot be found or loaded."""


class DriverNotFound(DriverError):
    pass


class DriverLoadFailed(DriverError):
    pass


# --- client side ----------------------------------------------------------


class ClientError(RuntaraError):
    """A call to a runtara server did not get an answer."""


class ConnectFailed(ClientError):
    """The QUIC connection could not be established."""


class ConnectionLost(ClientError):
    """The connection or the stream ended before the answer arrived."""


class RequestTimeout(ClientError):
    """No answer arrived in time."""


class RequestTooLarge(ClientError):
    """A request would exceed the 64 MiB frame limit; nothing was sent."""


class BadResponse(ClientError):
    """The server's answer is not a valid frame or message."""


class AccessDenied(ClientError):
    """The management service refused the token (missing or wrong)."""


# --- operators ------------------------------------------------------------


class OperationRefused(RuntaraError):
    """An operator's request cannot be carried out (unknown or finished instance, ...)."""
