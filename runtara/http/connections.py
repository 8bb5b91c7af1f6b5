"""What a client may hold of the HTTP server: connections and time.

The server (uvicorn's HTTP/1.1 protocol, on one event loop) costs a client
no thread, only a socket and a little memory, and this guard bounds those:

- each client (:func:`runtara.http.clients.source_of`) holds at most
  ``per_client`` connections at once, and everyone together ``total``; a
  connection beyond either is answered 503 and closed at once;
- a connection must deliver its whole request, head and body, within
  ``request_deadline`` seconds of its opening, however it trickles: else it is
  answered 408 and closed. Each connection carries one request (the server
  closes it after the response), so this covers every request it carries.

The guard lives on the server's event loop and is used from it alone.
"""

from __future__ import annotations

import asyncio
import collections
import logging

import attrs
from uvicorn.protocols.http.h11_impl import H11Protocol

from runtara.http.clients import source_of

logger = logging.getLogger(__name__)

Peer = tuple[str, int]
"""A connection's client address and port, as the ASGI scope's ``client``."""


@attrs.frozen
class Limits:
    per_client: int = 64
    """Connections one client may hold at once (a browser opens up to 6)."""
    total: int = 512
    """Connections held at once by everyone (each is a file descriptor)."""
    request_deadline: float = 10.0
    """Seconds a connection has from its opening to deliver its whole request."""


class ConnectionGuard:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._held: collections.Counter[str] = collections.Counter()
        self._total = 0
        self._deadlines: dict[Peer, asyncio.TimerHandle] = {}

    def opened(self, peer: Peer, transport: asyncio.BaseTransport) -> None:
        """Count a new connection; refuse it beyond a cap, else start its deadline."""
        source = source_of(peer[0])
        self._held[source] += 1
        self._total += 1
        if self._held[source] > self.limits.per_client:
            logger.debug("HTTP: %s holds too many connections: one refused", source)
            _answer(transport, 503, "too many connections from your address\n")
        elif self._total > self.limits.total:
            logger.debug("HTTP: too many connections: one from %s refused", source)
            _answer(transport, 503, "too many connections\n")
        else:
            self._deadlines[peer] = asyncio.get_running_loop().call_later(
                self.limits.request_deadline, self._late, peer, transport
            )

    def received(self, peer: Peer) -> None:
        """The request of ``peer``'s connection arrived whole: its deadline is met."""
        deadline = self._deadlines.pop(peer, None)
        if deadline is not None:
            deadline.cancel()

    def closed(self, peer: Peer) -> None:
        self.received(peer)
        source = source_of(peer[0])
        self._held[source] -= 1
        if self._held[source] <= 0:
            del self._held[source]
        self._total -= 1

    def _late(self, peer: Peer, transport: asyncio.BaseTransport) -> None:
        self._deadlines.pop(peer, None)
        logger.debug("HTTP: %s:%d sent no whole request in time: closed", *peer)
        _answer(transport, 408, "the request did not arrive in time\n")


def protocol_class(guard: ConnectionGuard) -> type[H11Protocol]:
    """uvicorn's HTTP/1.1 protocol (h11) with each connection counted by ``guard``."""

    class GuardedH11Protocol(H11Protocol):
        _peer: Peer | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._peer = peer_of(transport)
            if self._peer is None:  # gone already
                transport.close()
            else:
                guard.opened(self._peer, transport)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._peer is not None:
                guard.closed(self._peer)
            super().connection_lost(exc)

    return GuardedH11Protocol


def peer_of(transport: asyncio.BaseTransport) -> Peer | None:
    address = transport.get_extra_info("peername")
    if not isinstance(address, tuple) or len(address) < 2:
        return None
    return str(address[0]), int(address[1])


def _answer(transport: asyncio.BaseTransport, status: int, text: str) -> None:
    """Answer ``status`` on a connection that has not been answered, and close it."""
    reason = {408: "Request Timeout", 503: "Service Unavailable"}[status]
    body = text.encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    transport.write(head.encode() + body)  # type: ignore[attr-defined]
    transport.close()
