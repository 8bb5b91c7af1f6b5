"""The steering program, run by the kernel on a real SO_REUSEPORT group of UDP
sockets on loopback: datagrams are sent and the socket that receives each is
the program's answer."""

from __future__ import annotations

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
    assert first.encoded() == bytes.fromhex("8000" "00" "00" "00000000")
    # jge #1: code 0x35; true: the next one; false: "hash", the last, 15 further on.
    assert second.encoded() == bytes.fromhex("3500" "00" "0f" "01000000")


def test_the_target_follows_the_process_with_fewest_connections(group, tmp_path):
    path = tmp_path / "steering-instance"
    steering.start_group(group, path, ID_LENGTH)
    counts = [steering.SharedCounts(path, 3) for _ in group]  # each process maps it
    processes = [
        steering.Steering(sock, counts[number], process=number, id_length=ID_LENGTH)
        for number, sock in enumerate(group)
    ]
    open_now = [0, 0, 0]
    handed = []
    for _ in range(9):
        # A new client arrives; the process it reaches admits it and says so.
        process = receiver(group, long_header(INITIAL, os.urandom(20)))
        handed.append(process)
        open_now[process] += 1
        processes[process].connections_changed(open_now[process])
    assert handed == [0, 1, 2] * 3
    # Process 1's connections end: it has the fewest, and new ones go there.
    open_now[1] = 0
    processes[1].connections_changed(0)
    assert receiver(group, long_header(INITIAL, os.urandom(20))) == 1
    assert processes[0].counters() == {"connections_opened": 3, "steering_retargets": 3}
    for mapped in counts:
        mapped.close()


def test_a_shared_file_of_another_size_is_refused(tmp_path):
    path = tmp_path / "counts"
    steering.SharedCounts.create(path, 2)
    with pytest.raises(ValueError, match="3 processes need 16 bytes"):
        steering.SharedCounts(path, 3)
