"""The steering program, run by the kernel on a real SO_REUSEPORT group of UDP
sockets on loopback: datagrams are sent and the socket that receives each is
the program's answer."""

from __future__ import annotations

import asyncio
import os
import select
import socket
import struct

import pytest

from runtara.server import steering

ID_LENGTH = 8
HANDSHAKE, INITIAL = 0xE0, 0xC0  # long-header first bytes (fixed bit set)
VERSION_1 = struct.pack("!I", 1)


@pytest.fixture
def group():
    """Three sockets bound in order to one port: indexes 0, 1, 2 of the group."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    port = 0
    for sock in sockets:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", port))
        port = sock.getsockname()[1]
    yield sockets
    for sock in sockets:
        sock.close()


def receiver(group: list[socket.socket], datagram: bytes) -> int:
    """Which socket of ``group`` gets ``datagram``, sent from a fresh client socket
    (a new source port: a new hash, were the kernel to choose)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.sendto(datagram, group[0].getsockname())
        readable, _, _ = select.select(group, [], [], 2)
    assert len(readable) == 1, f"{len(readable)} sockets got the datagram"
    assert readable[0].recv(2048) == datagram
    return group.index(readable[0])


def short_header(first_id_byte: int) -> bytes:
    return bytes([0x40, first_id_byte]) + os.urandom(ID_LENGTH - 1) + os.urandom(30)


def long_header(first_byte: int, connection_id: bytes) -> bytes:
    header = bytes([first_byte]) + VERSION_1 + bytes([len(connection_id)]) + connection_id
    return (header + bytes([8]) + os.urandom(8)).ljust(1200, b"\0")


def test_a_short_header_goes_to_the_process_its_connection_id_names(group):
    steering.attach(group[0], steering.program(3, target=2, id_length=ID_LENGTH))
    for process in (0, 1, 2, 1, 0):
        assert [receiver(group, short_header(process)) for _ in range(4)] == [process] * 4


def test_handshake_and_later_initial_packets_go_to_the_process_of_the_servers_id(group):
    steering.attach(group[0], steering.program(3, target=2, id_length=ID_LENGTH))
    for process in (0, 1):
        server_id = bytes([process]) + os.urandom(ID_LENGTH - 1)
        assert receiver(group, long_header(HANDSHAKE, server_id)) == process
        assert receiver(group, long_header(INITIAL, server_id)) == process


def test_a_clients_first_flight_goes_to_the_target_whoever_sends_it(group):
    steering.attach(group[0], steering.program(3, target=1, id_length=ID_LENGTH))
    quinn_like = [long_header(INITIAL, os.urandom(20)) for _ in range(10)]
    # The id of the server's length whose first byte names no process.
    aioquic_like = [long_header(INITIAL, bytes([200]) + os.urandom(7)) for _ in range(10)]
    assert {receiver(group, datagram) for datagram in quinn_like + aioquic_like} == {1}
    # Any member replaces the group's program: new connections go elsewhere at once.
    steering.attach(group[2], steering.program(3, target=0, id_length=ID_LENGTH))
    assert {receiver(group, datagram) for datagram in quinn_like} == {0}


def test_what_is_no_quic_packet_of_ours_is_left_to_the_kernels_hash(group):
    steering.attach(group[0], steering.program(3, target=1, id_length=ID_LENGTH))
    # The hash depends on the client's port: over many clients it reaches every
    # socket, where the program's own answers would all be one.
    for datagram in (b"", b"\x40", short_header(3), short_header(255)):
        reached = {receiver(group, datagram) for _ in range(60)}
        assert reached == {0, 1, 2}, f"{datagram[:2].hex()}: {reached}"


def test_without_a_program_the_kernel_spreads_first_flights_by_hash(group):
    reached = {receiver(group, long_header(INITIAL, os.urandom(20))) for _ in range(60)}
    assert reached == {0, 1, 2}


def test_programs_are_checked_before_the_kernel_sees_them():
    with pytest.raises(ValueError, match="target 3 of 3"):
        steering.program(3, target=3, id_length=ID_LENGTH)
    with pytest.raises(ValueError, match="numbers are 0 to 255"):
        steering.program(257, target=0, id_length=ID_LENGTH)
    backwards = [("top", steering.load_length()), (None, steering.jump_if_equal(1, "top", "next"))]
    with pytest.raises(ValueError, match="must go forward"):
        steering.assemble(backwards)


def test_the_encoding_is_struct_sock_filter():
    first, second = steering.program(2, target=1, id_length=ID_LENGTH)[:2]
    # ld len: code 0x0080 (little-endian on this machine), no jumps, k = 0.
    assert first.encoded() == bytes.fromhex("8000000000000000")
    # jge #1: code 0x35; true: the next one; false: "hash", the last, 15 further on.
    assert second.encoded() == bytes.fromhex("3500000f01000000")


def table(tmp_path, processes: int) -> steering.SharedTable:
    path = tmp_path / "table"
    if not path.exists():
        steering.SharedTable.create(path, processes)
    return steering.SharedTable(path, processes)


def test_the_least_loaded_counts_what_was_handed_over_and_not_yet_taken(tmp_path):
    shared = table(tmp_path, 3)
    assert [shared.least_loaded(first) for first in (0, 1, 2)] == [0, 1, 2]  # equals: in turn
    shared.set_connections(0, 2)
    shared.set_connections(1, 1)
    shared.count_handed(2)
    assert shared.load(2) == 1 and shared.least_loaded(0) == 1
    shared.count_handed(1)
    shared.count_taken(1)  # taken: now one of its connections
    shared.set_connections(1, 2)
    assert shared.least_loaded(0) == 2
    # Two processes handing over at once (the parent moving first flights) may lose
    # a handed count: more taken than handed is none waiting, not 2**32 - 1.
    shared.count_taken(2)
    shared.count_taken(2)
    assert shared.load(2) == 0
    shared.close()


def test_a_shared_table_of_another_size_is_refused(tmp_path):
    table(tmp_path, 2).close()
    with pytest.raises(ValueError, match="3 processes need 36 bytes"):
        steering.SharedTable(tmp_path / "table", 3)


@pytest.mark.parametrize(
    "address", [("127.0.0.1", 50000), ("::1", 443, 0, 0), ("fe80::1", 9, 7, 2)]
)
def test_a_handed_over_datagram_keeps_its_client_address(address):
    datagram = long_header(INITIAL, os.urandom(20))
    assert steering.decode_handover(steering.encode_handover(datagram, address)) == (
        datagram,
        address,
    )


def test_first_flights_are_handed_to_the_least_loaded_process_and_repeats_follow(tmp_path):
    """Two processes' steering, their mailboxes real Unix sockets: process 0 gets
    every first flight, as the program sends them."""
    delivered: dict[int, list[tuple[bytes, tuple]]] = {0: [], 1: []}
    connections = [0, 0]
    mailboxes = steering.Mailboxes.create(2)

    async def scenario():
        loop = asyncio.get_running_loop()
        processes = []
        for number in (0, 1):
            part = steering.Steering(
                table(tmp_path, 2),
                process=number,
                id_length=ID_LENGTH,
                mailboxes=steering.Mailboxes.of_process(number, mailboxes.for_process(number)),
            )

            def deliver(datagram, address, number=number):
                delivered[number].append((datagram, address))
                connections[number] += 1
                processes[number].connections_changed(connections[number])

            part.start(loop, deliver)
            processes.append(part)
        first = processes[0]
        clients = [os.urandom(20) for _ in range(6)]
        for number, client_id in enumerate(clients):
            datagram = long_header(INITIAL, client_id)
            if not first.hand_over(datagram, ("127.0.0.1", 40000 + number), client_id, True):
                deliver_here(first, connections)
        await wait_until(lambda: len(delivered[1]) == 3)
        # Handed-over datagrams are not yet counted where they went: still they
        # alternate, and the split is even.
        assert connections == [3, 3]
        assert first.counters() == {"connections_opened": 3, "connections_handed_over": 3}
        assert processes[1].counters() == {"connections_opened": 3, "connections_handed_over": 0}
        handed_ids = [datagram[6:26] for datagram, _ in delivered[1]]
        # A repeat of a first flight, or its second datagram, goes where the first did,
        # even when not new here (the id is known) ...
        assert first.hand_over(long_header(INITIAL, handed_ids[0]), ("h", 1), handed_ids[0], False)
        await wait_until(lambda: len(delivered[1]) == 4)
        # ... and what came to process 0 itself stays.
        kept = next(c for c in clients if c not in handed_ids)
        assert not first.hand_over(long_header(INITIAL, kept), ("h", 1), kept, False)
        # An id the server issued never moves: the program routed it.
        ours = bytes([1]) + os.urandom(ID_LENGTH - 1)
        assert not first.hand_over(long_header(HANDSHAKE, ours), ("h", 1), ours, True)
        # A process that cannot take what it is handed (its mailbox full): served here.
        loop.remove_reader(mailboxes.inbox(1).fileno())
        handed = 0
        for _ in range(200):
            client_id = os.urandom(20)
            first._table.set_connections(1, 0)
            first._table.count_taken(1)  # as if process 1 took each: it stays the least loaded
            handed += first.hand_over(long_header(INITIAL, client_id), ("h", 1), client_id, True)
        assert 10 < handed < 200  # more than net.unix.max_dgram_qlen, fewer than all
        for part in processes:
            part.close()
        mailboxes.close()

    def deliver_here(part, counts):
        counts[part.process] += 1
        part.connections_changed(counts[part.process])

    asyncio.run(scenario())


async def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_the_parent_routes_new_clients_around_a_dead_process(group, tmp_path):
    parent = steering.Group(group, tmp_path / "table", ID_LENGTH)
    first_flight = long_header(INITIAL, os.urandom(20))
    assert receiver(group, first_flight) == 0
    assert not parent.process_died(2)  # it does not receive first flights
    assert parent.table.least_loaded(2) == 0  # and is not handed any
    assert parent.process_died(0)
    assert {receiver(group, first_flight) for _ in range(5)} == {1}
    assert receiver(group, short_header(0)) == 0  # its clients still reach its socket
    parent.close()
