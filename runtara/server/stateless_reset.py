"""Stateless resets (RFC 9000 section 10.3): the connection ids a server process
issues, their reset tokens, and the reset it answers to a packet for a
connection it does not know.

A server process that was killed and started again has lost its connections,
but their clients keep sending to it. Answering each such packet with a
stateless reset ends the client's connection at once, instead of when its
idle timeout runs out. The client recognises the reset by the token it was
given with the connection id, so the tokens must not depend on the process:
each is HMAC-SHA256(secret, connection id) cut to 16 bytes, with the secret
every process of the server shares and keeps across restarts
(:mod:`runtara.server.reset_secret`).

Several server processes share one UDP port, and the kernel may hand a packet
of one process's connection to another (a client whose address changed).
That process must not reset a connection a sibling still serves: the first
byte of every connection id is the number of the process that issued it, and
a process resets only the ids it issued itself or that no process of the
server can have issued.

A reset answers a packet, and a client that waits for a reply has nothing to
send: a Rust client (quinn) sends its next packet with its keep-alive, seconds
later. So a process that starts again also resets, unasked, the connections
its predecessor journaled (:mod:`runtara.server.connection_journal`), with
the same kind of datagram and under the same rate limit.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable

CONNECTION_ID_LENGTH = 8
"""Bytes of every connection id the server issues (aioquic's default). A short
header does not carry the length: a restarted server reads this many bytes
as the destination connection id."""
TOKEN_SIZE = 16
SMALLEST_RESET = 21
"""A first byte, at least four unpredictable bytes, the token (RFC 9000 section 10.3)."""
LONGEST_RESET = 50
"""Resets are this long at most (shorter for shorter triggers): a small packet like any other."""
RESETS_PER_SECOND = 500.0
RESET_BURST = 1000
"""After a restart every client of the dead process sends soon: a burst answers them at once."""


class TokenBucket:
    """At most ``rate`` takes a second on average, ``burst`` at once."""

    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class StatelessResets:
    """One server process's connection ids, their tokens and its stateless resets.

    ``process`` is this process's number (0 when it is the only one) and
    ``processes`` how many serve the port.
    """

    def __init__(
        self, secret: bytes, *, process: int, processes: int, bucket: TokenBucket | None = None
    ) -> None:
        if not 0 <= process < processes <= 256:
            raise ValueError(f"process {process} of {processes}: numbers are 0 to 255")
        self._secret = secret
        self.process = process
        self.processes = processes
        self._bucket = bucket or TokenBucket(RESETS_PER_SECOND, RESET_BURST)
        self.connection_id_length = CONNECTION_ID_LENGTH
        self.sent = 0
        self.rate_limited = 0
        self.withheld = 0
        """Packets for a connection a sibling process issued, left unanswered."""
        self.announced = 0
        """Resets sent unasked to the clients of this process's predecessor."""

    def new_connection_id(self) -> bytes:
        return bytes([self.process]) + os.urandom(self.connection_id_length - 1)

    def reset_token(self, connection_id: bytes) -> bytes:
        return hmac.digest(self._secret, connection_id, hashlib.sha256)[:TOKEN_SIZE]

    def reset_for(self, datagram: bytes, connection_id: bytes) -> bytes | None:
        """The stateless reset to answer ``datagram``, a short-header packet for
        ``connection_id``, which this process does not know; None to stay silent.

        The reset is shorter than the datagram, so two endpoints that do not
        know each other's connections cannot keep answering each other, and a
        reset never amplifies; a datagram too short for that gets no answer.
        """
        if not datagram[0] & 0x40:  # the fixed bit: not a QUIC packet
            return None
        if len(datagram) <= SMALLEST_RESET or len(connection_id) != self.connection_id_length:
            return None
        issuer = connection_id[0]
        if issuer != self.process and issuer < self.processes:
            self.withheld += 1
            return None
        if not self._bucket.take():
            self.rate_limited += 1
            return None
        self.sent += 1
        return self._reset(connection_id, min(len(datagram) - 1, _usual_size()))

    def announcement(self, connection_id: bytes) -> bytes | None:
        """The stateless reset to send, unasked, to the client of ``connection_id``,
        a connection of this process's predecessor; None while the rate limit
        holds it back (ask again later)."""
        if not self._bucket.take():
            return None
        self.announced += 1
        return self._reset(connection_id, _usual_size())

    def _reset(self, connection_id: bytes, size: int) -> bytes:
        unpredictable = bytearray(os.urandom(size - TOKEN_SIZE))
        unpredictable[0] = 0x40 | unpredictable[0] & 0x3F  # a short header's first bits
        return bytes(unpredictable) + self.reset_token(connection_id)

    def counters(self) -> dict[str, float]:
        return {
            "stateless_resets_sent": self.sent,
            "stateless_resets_rate_limited": self.rate_limited,
            "stateless_resets_withheld": self.withheld,
            "stateless_resets_announced": self.announced,
        }


def _usual_size() -> int:
    return LONGEST_RESET - secrets.randbelow(8)
