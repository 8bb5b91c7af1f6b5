"""One server per address: a lock per bound port, held while the server runs.

SO_REUSEPORT lets every process of a user join a UDP port's group (the
server's own processes share their port that way), so binding alone does not
stop a second runtara-core from taking a share of a running one's clients.
Each server therefore also holds, for every address it serves, a Unix socket
in Linux's abstract namespace named after the address. The kernel frees it
when the process ends, however it ends, so a crashed server never leaves a
stale lock. A server that finds the name taken connects to it and learns who
holds it (pid, storage), to say so.

The abstract namespace belongs to the network namespace: two servers in
different network namespaces have different addresses anyway.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading

from runtara import errors

TIMEOUT = 2.0
"""Seconds to ask the holder of a taken address who it is."""


class AddressLock:
    """The lock of one served address, held until :meth:`release`; it tells a
    server that asks who holds it."""

    def __init__(self, kind: str, address: tuple[str, int], holder: dict) -> None:
        self.name = _name(kind, address)
        self._reply = (json.dumps(holder) + "\n").encode()
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._socket.bind(self.name)  # OSError (EADDRINUSE) when held elsewhere
            self._socket.listen(8)
        except OSError:
            self._socket.close()
            raise
        self._thread = threading.Thread(target=self._answer, name="runtara-lock", daemon=True)
        self._thread.start()

    def _answer(self) -> None:
        while True:
            try:
                peer, _ = self._socket.accept()
            except OSError:  # released
                return
            with peer:
                with contextlib.suppress(OSError):
                    peer.sendall(self._reply)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()


def _name(kind: str, address: tuple[str, int]) -> str:
    host, port = address[:2]
    return f"\0runtara-core/{kind}/{host}/{port}"


def hold(kind: str, address: tuple[str, int], setting: str, holder: dict) -> AddressLock:
    """Take the lock of ``address`` (``kind``: ``udp`` or ``tcp``) for this server,
    described by ``holder`` (what another server asking is told); ListenFailed,
    naming the server that holds it, when it is taken."""
    try:
        return AddressLock(kind, address, holder)
    except OSError:
        pass
    other = who_holds(kind, address)
    host, port = address[:2]
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    said = (
        f"runtara-core pid {other.get('pid', '?')}, storage {other.get('storage', '?')}"
        if other
        else "another runtara-core"
    )
    raise errors.ListenFailed(
        f"cannot listen on {shown} ({kind.upper()}, {setting}): {said} serves it already; "
        "stop that server or choose another port"
    )


def who_holds(kind: str, address: tuple[str, int]) -> dict | None:
    """What the server holding ``address`` says of itself, or None."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as asking:
        asking.settimeout(TIMEOUT)
        try:
            asking.connect(_name(kind, address))
            data = b""
            while not data.endswith(b"\n") and len(data) < 4096:
                chunk = asking.recv(4096)
                if not chunk:
                    break
                data += chunk
            return json.loads(data)
        except (OSError, ValueError):
            return None


class Claims:
    """The address locks one server holds, taken as it binds its ports."""

    def __init__(self, holder: dict) -> None:
        self.holder = holder
        self._locks: dict[tuple[str, str, int], AddressLock] = {}

    def claim(self, kind: str, address: tuple[str, int], setting: str) -> None:
        """Hold ``address`` (ListenFailed naming its holder when another server has
        it); a port 0 is claimed once bound, under the port it got."""
        key = (kind, *address[:2])
        if address[1] != 0 and key not in self._locks:
            self._locks[key] = hold(kind, address, setting, self.holder)

    def release(self) -> None:
        for lock in self._locks.values():
            lock.release()
        self._locks.clear()
