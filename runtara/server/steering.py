"""Steering datagrams among the server processes that share a UDP port.

By itself the kernel hands each datagram of a SO_REUSEPORT group to the
socket a hash of its addresses and ports picks: every packet of a client
reaches one process, but new clients are spread only as evenly as chance
allows (32 connections were measured split 21 to 11), and a client whose
address changes lands on another process that does not know its connection.

A classic BPF program attached to the group (SO_ATTACH_REUSEPORT_CBPF) picks
the socket instead: the program sees the UDP payload, the QUIC packet, and
returns the index of a socket in the group. The parent binds the sockets in
order and keeps them, so socket ``i`` is process ``i``'s for the server's
whole life (a process started again gets the same socket). The program
routes:

- a packet whose destination connection id is one this server issued to the
  process whose number is the id's first byte (short headers, and the
  Handshake and later Initial packets of a handshake);
- any other long-header packet, a client's first flight, whose destination
  id the client chose at random, to one process, the target (process 0; the
  parent moves it to the next process while the target is being restarted);
- anything else (too short, or an id no process of this server issued) to the
  socket the kernel's hash picks, as without a program.

The process that receives a client's first flight decides who serves the
client: the process with the fewest connections, counting those handed to
it and not yet taken. When that is another process, it hands the datagram
over (through a pair of Unix datagram sockets per process, :class:`Mailboxes`);
the other process handles it as if it had received it, and answers from its
own socket of the group, on the same address. The client's next packets
carry the connection id that process issued, which the program routes to
it. A program alone cannot spread new connections evenly: clients that
connect at once (32 within a millisecond) all arrive before a process could
re-point any program.

The first flight may take several datagrams (a large ClientHello), and a
client repeats it when no answer comes in time: the deciding process
remembers, for a while, whom it gave each client's id to, and hands the
rest to the same process. (While the target is being restarted, a repeat
reaches the next process, which may start a second connection for it: the
client keeps the one that answers first, and the other, never completed,
ends at its handshake timeout.) A client whose random id happens to start with a
process number has its first flight routed by that number, to one process
consistently: a chance of ``processes``/256 for a client that picks ids of
the server's length (aioquic's clients do; quinn's pick 20 bytes).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import mmap
import os
import socket
import struct
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

logger = logging.getLogger(__name__)

SO_ATTACH_REUSEPORT_CBPF = 51
"""setsockopt option (asm-generic/socket.h): a classic BPF program choosing the
socket of the group for each datagram."""
KERNEL_HASH = 0xFFFFFFFF
"""A program's answer that is no socket's index: the kernel then uses its hash."""

# Classic BPF instruction codes (linux/bpf_common.h, linux/filter.h).
BPF_LD, BPF_JMP, BPF_RET = 0x00, 0x05, 0x06
BPF_W, BPF_B = 0x00, 0x10  # load a 32-bit word, a byte
BPF_ABS, BPF_LEN = 0x20, 0x80  # from a fixed offset of the packet; the packet's length
BPF_JEQ, BPF_JGE, BPF_JSET = 0x10, 0x30, 0x40
BPF_K, BPF_A = 0x00, 0x10  # compare with / return the constant; return the accumulator

LONG_HEADER = 0x80
"""First-byte bit of a QUIC long header; a short header (1-RTT) has it clear."""
SHORT_ID_AT = 1
"""A short header's destination connection id starts at byte 1 (its length is not sent)."""
LONG_ID_LENGTH_AT = 5
"""A long header: first byte, 4-byte version, destination id length, the id."""


class Instruction(NamedTuple):
    """One classic BPF instruction (struct sock_filter): ``jt``/``jf`` are how many
    instructions a conditional jump skips when true / false."""

    code: int
    jt: int
    jf: int
    k: int

    def encoded(self) -> bytes:
        return struct.pack("=HBBI", self.code, self.jt, self.jf, self.k)


# An instruction before assembly: jumps name labels ("next" is the following one).
_Step = tuple[int, str, str, int]


def load_length() -> _Step:
    return (BPF_LD | BPF_W | BPF_LEN, "next", "next", 0)


def load_byte(offset: int) -> _Step:
    return (BPF_LD | BPF_B | BPF_ABS, "next", "next", offset)


def jump_if_at_least(value: int, yes: str, no: str) -> _Step:
    return (BPF_JMP | BPF_JGE | BPF_K, yes, no, value)


def jump_if_equal(value: int, yes: str, no: str) -> _Step:
    return (BPF_JMP | BPF_JEQ | BPF_K, yes, no, value)


def jump_if_any_bit(mask: int, yes: str, no: str) -> _Step:
    return (BPF_JMP | BPF_JSET | BPF_K, yes, no, mask)


def return_loaded() -> _Step:
    return (BPF_RET | BPF_A, "next", "next", 0)


def return_value(value: int) -> _Step:
    return (BPF_RET | BPF_K, "next", "next", value)


def assemble(steps: Sequence[tuple[str | None, _Step]]) -> list[Instruction]:
    """Instructions from ``(label, step)`` pairs, each jump's labels turned into
    the forward distance classic BPF wants."""
    where = {label: index for index, (label, _) in enumerate(steps) if label}
    program = []
    for index, (_, (code, yes, no, k)) in enumerate(steps):
        skips = [0 if label == "next" else where[label] - index - 1 for label in (yes, no)]
        if not all(0 <= skip < 256 for skip in skips):
            raise ValueError(f"instruction {index}: a jump must go forward, by less than 256")
        program.append(Instruction(code, *skips, k))
    return program


def program(processes: int, target: int, id_length: int) -> list[Instruction]:
    """The program for a group of ``processes`` sockets whose processes issue
    connection ids of ``id_length`` bytes starting with their number, sending
    new connections to ``target``."""
    if not 0 <= target < processes <= 256:
        raise ValueError(f"target {target} of {processes} processes: numbers are 0 to 255")
    long_id_at = LONG_ID_LENGTH_AT + 1
    return assemble(
        [
            (None, load_length()),
            (None, jump_if_at_least(1, "next", "hash")),
            (None, load_byte(0)),
            (None, jump_if_any_bit(LONG_HEADER, "long", "next")),
            # Short header: the id is ours, its first byte the process.
            (None, load_length()),
            (None, jump_if_at_least(SHORT_ID_AT + id_length, "next", "hash")),
            (None, load_byte(SHORT_ID_AT)),
            (None, jump_if_at_least(processes, "hash", "next")),
            (None, return_loaded()),
            # Long header: ours if it has our length and names a process.
            ("long", load_length()),
            (None, jump_if_at_least(long_id_at + id_length, "next", "new")),
            (None, load_byte(LONG_ID_LENGTH_AT)),
            (None, jump_if_equal(id_length, "next", "new")),
            (None, load_byte(long_id_at)),
            (None, jump_if_at_least(processes, "new", "next")),
            (None, return_loaded()),
            ("new", return_value(target)),
            ("hash", return_value(KERNEL_HASH)),
        ]
    )


def attach(sock: socket.socket, instructions: Sequence[Instruction]) -> None:
    """Make ``instructions`` the program of the SO_REUSEPORT group ``sock`` belongs to
    (replacing the one it has). The kernel copies them: nothing is kept here."""
    code = ctypes.create_string_buffer(b"".join(i.encoded() for i in instructions))
    # struct sock_fprog: the instruction count, then a pointer to them.
    fprog = struct.pack("@HP", len(instructions), ctypes.addressof(code))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)


class SharedTable:
    """The file the processes of one group share, 32-bit slots: each process's
    number of connections, then how many datagrams were handed to each, then
    how many each took. Aligned 32-bit reads and writes are whole, so no lock
    is needed: a process's connections and taken counts have that process as
    their one writer, the handed counts the process that receives first
    flights (two for a moment when the parent moves them, when a count may be
    lost: a process is then seen with one waiting datagram more or less, never
    fewer than none). The handed and taken counts only grow, wrapping at 2**32.
    The parent keeps the file and the mailboxes across restarts: a process
    started again takes what was left waiting for its predecessor."""

    def __init__(self, path: Path, processes: int) -> None:
        size = 4 * 3 * processes
        with open(path, "r+b") as file:
            if os.fstat(file.fileno()).st_size != size:
                raise ValueError(f"{path}: {processes} processes need {size} bytes")
            self._map = mmap.mmap(file.fileno(), size)
        self._slots = memoryview(self._map).cast("I")
        self.processes = processes

    @staticmethod
    def create(path: Path, processes: int) -> None:
        """A new file: no connections, nothing handed over."""
        path.write_bytes(bytes(4 * 3 * processes))

    def connections(self, process: int) -> int:
        return self._slots[process]

    def set_connections(self, process: int, count: int) -> None:
        self._slots[process] = count

    def handed(self, process: int) -> int:
        return self._slots[self.processes + process]

    def count_handed(self, process: int) -> None:
        self._slots[self.processes + process] = (self.handed(process) + 1) & 0xFFFFFFFF

    def count_taken(self, process: int) -> None:
        slot = 2 * self.processes + process
        self._slots[slot] = (self._slots[slot] + 1) & 0xFFFFFFFF

    def load(self, process: int) -> int:
        """Connections, and datagrams handed over not yet taken (a connection each, soon)."""
        waiting = (self.handed(process) - self._slots[2 * self.processes + process]) & 0xFFFFFFFF
        if waiting >= 1 << 31:  # more taken than handed: a handed count was lost
            waiting = 0
        return self.connections(process) + waiting

    def least_loaded(self, first: int) -> int:
        """The process with the least load; of equals, the first from ``first`` on in
        turn."""
        order = [(first + step) % self.processes for step in range(self.processes)]
        return min(order, key=self.load)

    def close(self) -> None:
        self._slots.release()
        self._map.close()


class Mailboxes:
    """Where the processes of a group hand each other datagrams: a connected pair of
    Unix datagram sockets per process, made by the parent, which keeps them (a
    process started again reads its predecessor's). Every process has every
    pair's sending end, and its own pair's receiving end. Connected, a pair
    queues as many datagrams as its sending end's buffer holds (about 90 first
    flights), where a datagram sent to a socket's address waits only in a queue
    of ``net.unix.max_dgram_qlen`` (10)."""

    def __init__(self, pairs: Sequence[tuple[socket.socket | None, socket.socket | None]]):
        self._pairs = list(pairs)

    @classmethod
    def create(cls, processes: int) -> Mailboxes:
        return cls([socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in range(processes)])

    def for_process(self, process: int) -> list[socket.socket]:
        """The sockets process ``process`` gets: every sending end, then its receiving end."""
        return [send for send, _ in self._pairs] + [self._pairs[process][1]]

    @classmethod
    def of_process(cls, process: int, sockets: Sequence[socket.socket]) -> Mailboxes:
        """In process ``process``: its mailboxes, from the sockets :meth:`for_process` gave."""
        *senders, inbox = sockets
        pairs = [
            (send, inbox if number == process else None) for number, send in enumerate(senders)
        ]
        return cls(pairs)

    def inbox(self, process: int) -> socket.socket:
        return self._pairs[process][1]

    def send(self, process: int, message: bytes) -> None:
        self._pairs[process][0].send(message, socket.MSG_DONTWAIT)

    def close(self) -> None:
        for pair in self._pairs:
            for sock in pair:
                if sock is not None:
                    sock.close()


UNAVAILABLE = 1 << 30
"""The connections a dead process is shown with, so that none is handed to it
before its successor starts (and shows its own, none)."""


class Group:
    """The parent's side of steering one SO_REUSEPORT group, whose ``sockets`` it
    bound in order: the group's program, its shared table and mailboxes."""

    def __init__(self, sockets: Sequence[socket.socket], table_path: Path, id_length: int):
        self._sockets = list(sockets)
        self._id_length = id_length
        SharedTable.create(table_path, len(sockets))
        self.table = SharedTable(table_path, len(sockets))
        self.mailboxes = Mailboxes.create(len(sockets))
        self.first_flights = 0
        """The process the program sends clients' first flights to."""
        self._point_first_flights()

    def process_died(self, process: int) -> bool:
        """Route new clients around ``process`` until its successor starts; True if
        that moved the first flights (to the next process), which would otherwise
        wait in its socket."""
        self.table.set_connections(process, UNAVAILABLE)
        if process != self.first_flights:
            return False
        self.first_flights = (process + 1) % len(self._sockets)
        self._point_first_flights()
        return True

    def _point_first_flights(self) -> None:
        processes = len(self._sockets)
        attach(self._sockets[0], program(processes, self.first_flights, self._id_length))

    def close(self) -> None:
        self.table.close()
        self.mailboxes.close()


REMEMBERED = 30.0
"""Seconds a process remembers whom it handed a client's first flight to: longer than
a client keeps repeating it before giving up (quinn and the SDK: 10 s)."""

Address = tuple
"""A client's address as the event loop gives it: (host, port), or for IPv6
(host, port, flow info, scope id)."""


def encode_handover(datagram: bytes, address: Address) -> bytes:
    """A datagram and the client address it came from, as handed to another process:
    the address's parts separated by spaces, a newline, the datagram."""
    return " ".join(map(str, address)).encode() + b"\n" + datagram


def decode_handover(message: bytes) -> tuple[bytes, Address]:
    header, _, datagram = message.partition(b"\n")
    host, port, *v6 = header.decode().split(" ")
    return datagram, (host, int(port), *map(int, v6))


class Steering:
    """One server process's part in steering its group: it keeps its number of
    connections in the shared table, decides who serves the clients whose first
    flight it receives, and takes those its siblings hand it."""

    def __init__(
        self,
        table: SharedTable,
        *,
        process: int,
        id_length: int,
        mailboxes: Mailboxes,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._table = table
        self.process = process
        self._id_length = id_length
        self._mailboxes = mailboxes
        self._clock = clock
        self._given: dict[bytes, tuple[int, float]] = {}
        """Client-chosen ids whose first flight went to another process: to whom, when."""
        self.opened = 0
        """Connections this process started (every one, since it started)."""
        self.handed_over = 0
        """First-flight datagrams this process handed to another."""
        self._connections = 0
        table.set_connections(process, 0)  # its predecessor's are gone

    def start(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[bytes, Address], None]):
        """Take, on ``loop``, the datagrams other processes hand this one, giving each
        to ``deliver`` as if this process's socket had received it."""
        inbox = self._mailboxes.inbox(self.process)
        inbox.setblocking(False)

        def take() -> None:
            while True:
                try:
                    message = inbox.recv(65536)
                except BlockingIOError:
                    return
                self._table.count_taken(self.process)
                deliver(*decode_handover(message))

        loop.add_reader(inbox.fileno(), take)

    def connections_changed(self, count: int) -> None:
        if count > self._connections:
            self.opened += count - self._connections
        self._connections = count
        self._table.set_connections(self.process, count)

    def hand_over(self, datagram: bytes, address: Address, client_id: bytes, new: bool) -> bool:
        """For a long-header ``datagram`` for the destination id ``client_id``: True if
        another process gets it (this one must then drop it). ``new`` says it
        would start a connection here (an Initial big enough, for an id no
        connection of this process has)."""
        if len(client_id) == self._id_length and client_id[0] < self._table.processes:
            return False  # an id this server issued: the program routed it here
        now = self._clock()
        given = self._given.get(client_id)
        if given is not None and now - given[1] < REMEMBERED:
            process = given[0]
        elif new:
            self._forget_older_than(now - REMEMBERED)
            process = self._table.least_loaded(self.process)
        else:
            return False
        if process == self.process:
            return False
        try:
            self._mailboxes.send(process, encode_handover(datagram, address))
        except OSError as error:  # its mailbox is full: it cannot keep up, serve it here
            logger.debug("cannot hand a new connection to process %d: %s", process, error)
            return False
        self._table.count_handed(process)
        self._given.pop(client_id, None)  # to the end: the order is the order of time
        self._given[client_id] = (process, now)
        self.handed_over += 1
        return True

    def _forget_older_than(self, moment: float) -> None:
        for client_id, (_, when) in list(self._given.items()):
            if when >= moment:
                break  # insertion order is time order
            del self._given[client_id]

    def close(self) -> None:
        self._table.close()

    def counters(self) -> dict[str, float]:
        return {"connections_opened": self.opened, "connections_handed_over": self.handed_over}
