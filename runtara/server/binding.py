"""Binding the server's UDP sockets, with a failure that says what to change."""

from __future__ import annotations

import errno
import socket

from runtara import errors

REASONS = {
    errno.EADDRINUSE: "address already in use (another program, or another runtara-core, "
    "has this UDP port: stop it or choose another port)",
    errno.EADDRNOTAVAIL: "no network interface of this machine has this address",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
}


def bind_udp(host: str, port: int, *, setting: str, reuse_port: bool = False) -> socket.socket:
    """A UDP socket bound to ``host:port`` (a free port when ``port`` is 0).

    ``setting`` names the option that chose the address, for the message of the
    :class:`errors.ListenFailed` raised when the address cannot be had.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        shown = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        reason = REASONS.get(error.errno, error.strerror or str(error))
        raise errors.ListenFailed(f"cannot listen on {shown} (UDP, {setting}): {reason}") from None
    return sock
