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
  id the client chose at random, to the process that takes new connections
  now, the target;
- anything else (too short, or an id no process of this server issued) to the
  socket the kernel's hash picks, as without a program.

The target moves: every process writes how many connections it has into a
small file the processes map, and when its number changes (a connection
opened or ended) it points new connections at the process with the fewest,
by attaching a new program to the group through its own socket. That takes
one system call and no privilege. Two processes doing it at once, or
datagrams of several new clients that arrive before the first is seen, skew
the split by a connection or two, which the next decisions even out.

A client repeats its first flight when no answer comes in time (a second or
more). If the target moved meanwhile, the repeat reaches another process,
which starts a second connection for it; the client keeps the one whose
answer comes first and the other, never completed, ends at its handshake
timeout. A client whose random id happens to start with a process number
has its first flight routed by that number, to one process consistently: a
chance of ``processes``/256 for a client that picks ids of the server's
length (aioquic's clients do; quinn's pick 20 bytes, never mistaken).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import socket
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

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


class SharedCounts:
    """The file the processes of one group share: the current target, then each
    process's number of open connections, one 32-bit slot each. Every slot has
    one writer (the target: whoever attached last), and aligned 32-bit reads
    and writes are whole, so no lock is needed."""

    def __init__(self, path: Path, processes: int) -> None:
        size = 4 * (1 + processes)
        with open(path, "r+b") as file:
            if os.fstat(file.fileno()).st_size != size:
                raise ValueError(f"{path}: {processes} processes need {size} bytes")
            self._map = mmap.mmap(file.fileno(), size)
        self._slots = memoryview(self._map).cast("I")
        self.processes = processes

    @staticmethod
    def create(path: Path, processes: int) -> None:
        """A new file: target 0, no connections."""
        path.write_bytes(bytes(4 * (1 + processes)))

    @property
    def target(self) -> int:
        return self._slots[0]

    @target.setter
    def target(self, process: int) -> None:
        self._slots[0] = process

    def open_connections(self, process: int) -> int:
        return self._slots[1 + process]

    def set_open_connections(self, process: int, count: int) -> None:
        self._slots[1 + process] = count

    def fewest_after(self, process: int) -> int:
        """The process with the fewest open connections; of equals, the first after
        ``process`` in turn (so that equals take new connections in turn)."""
        order = [(process + step) % self.processes for step in range(1, self.processes + 1)]
        return min(order, key=self.open_connections)

    def close(self) -> None:
        self._slots.release()
        self._map.close()


def start_group(sockets: Sequence[socket.socket], counts_path: Path, id_length: int) -> None:
    """In the parent, which bound ``sockets`` in order: the shared file, and the
    group's first program (new connections to process 0)."""
    SharedCounts.create(counts_path, len(sockets))
    attach(sockets[0], program(len(sockets), 0, id_length))


class Steering:
    """One server process's part: given its number of open connections whenever it
    changes, it keeps the group's new connections going to the process with the
    fewest."""

    def __init__(
        self, sock: socket.socket, counts: SharedCounts, *, process: int, id_length: int
    ) -> None:
        self._sock = sock
        self._counts = counts
        self.process = process
        self._id_length = id_length
        self.opened = 0
        """Connections this process was handed (every one, since it started)."""
        self.retargeted = 0
        """Times this process pointed new connections at another process."""
        self._open = 0
        counts.set_open_connections(process, 0)  # what a predecessor left is gone

    def connections_changed(self, open_now: int) -> None:
        if open_now > self._open:
            self.opened += open_now - self._open
        self._open = open_now
        self._counts.set_open_connections(self.process, open_now)
        target = self._counts.fewest_after(self.process)
        if target != self._counts.target:
            attach(self._sock, program(self._counts.processes, target, self._id_length))
            self._counts.target = target
            self.retargeted += 1

    def counters(self) -> dict[str, float]:
        return {"connections_opened": self.opened, "steering_retargets": self.retargeted}
