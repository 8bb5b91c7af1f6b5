"""Connection ids, reset tokens and the stateless reset a server process answers."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from runtara.server.stateless_reset import (
    SMALLEST_RESET,
    TOKEN_SIZE,
    StatelessResets,
    TokenBucket,
)

SECRET = bytes(range(32))


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def resets(process: int = 0, processes: int = 1, **kwargs) -> StatelessResets:
    return StatelessResets(SECRET, process=process, processes=processes, **kwargs)


def short_packet(connection_id: bytes, size: int) -> bytes:
    return bytes([0x41]) + connection_id + bytes(size - 1 - len(connection_id))


def test_a_connection_id_starts_with_the_number_of_the_process_that_issued_it():
    ids = {resets(process=3, processes=4).new_connection_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(len(cid) == 8 and cid[0] == 3 for cid in ids)


def test_the_token_is_the_hmac_of_the_id_under_the_secret_and_the_same_in_every_process():
    cid = resets().new_connection_id()
    expected = hmac.new(SECRET, cid, hashlib.sha256).digest()[:16]
    assert resets().reset_token(cid) == expected
    assert resets(process=1, processes=2).reset_token(cid) == expected
    other = StatelessResets(bytes(32), process=0, processes=1)
    assert other.reset_token(cid) != expected
    assert resets().reset_token(resets().new_connection_id()) != expected


@pytest.mark.parametrize("size", [22, 23, 30, 44, 45, 60, 200, 1200, 1500])
def test_a_reset_is_shorter_than_its_trigger_and_ends_with_the_token(size):
    policy = resets()
    cid = policy.new_connection_id()
    for _ in range(20):
        reset = policy.reset_for(short_packet(cid, size), cid)
        assert SMALLEST_RESET <= len(reset) < size
        assert reset[0] & 0xC0 == 0x40
        assert reset[-TOKEN_SIZE:] == policy.reset_token(cid)


def test_a_reset_is_unpredictable_but_for_its_first_two_bits_and_the_token():
    policy = resets()
    cid = policy.new_connection_id()
    packet = short_packet(cid, 100)
    bodies = {policy.reset_for(packet, cid)[:-TOKEN_SIZE] for _ in range(30)}
    assert len(bodies) == 30
    assert {body[0] & 0x3F for body in bodies} != {0}


@pytest.mark.parametrize("size", [1, 5, 9, 20, 21])
def test_a_datagram_too_short_for_a_smaller_reset_gets_none(size):
    policy = resets()
    datagram = short_packet(policy.new_connection_id(), 30)[:size]
    assert policy.reset_for(datagram, datagram[1:9]) is None
    assert policy.sent == 0


def test_a_packet_without_the_fixed_bit_is_not_quic_and_gets_none():
    policy = resets()
    cid = policy.new_connection_id()
    assert policy.reset_for(bytes([0x01]) + short_packet(cid, 60)[1:], cid) is None


def test_a_process_leaves_a_siblings_connections_alone_and_resets_its_own_and_orphans():
    policy = resets(process=1, processes=3)
    sibling = bytes([2]) + bytes(7)
    own = bytes([1]) + bytes(7)
    orphan = bytes([3]) + bytes(7)  # no process of three has number 3
    assert policy.reset_for(short_packet(sibling, 60), sibling) is None
    assert policy.withheld == 1
    assert policy.reset_for(short_packet(own, 60), own) is not None
    assert policy.reset_for(short_packet(orphan, 60), orphan) is not None
    assert policy.counters() == {
        "stateless_resets_sent": 2,
        "stateless_resets_rate_limited": 0,
        "stateless_resets_withheld": 1,
        "stateless_resets_announced": 0,
    }


def test_a_single_process_resets_every_unknown_id():
    policy = resets()
    for first in (0, 1, 200, 255):
        cid = bytes([first]) + bytes(7)
        assert policy.reset_for(short_packet(cid, 60), cid) is not None


def test_resets_beyond_the_rate_are_dropped_and_counted():
    clock = Clock()
    policy = resets(bucket=TokenBucket(rate=10, burst=5, clock=clock))
    cid = policy.new_connection_id()
    packet = short_packet(cid, 60)
    answers = [policy.reset_for(packet, cid) for _ in range(8)]
    assert sum(answer is not None for answer in answers) == 5
    assert policy.rate_limited == 3
    clock.now += 0.25  # 2.5 more at 10 a second
    answers = [policy.reset_for(packet, cid) for _ in range(4)]
    assert sum(answer is not None for answer in answers) == 2


def test_the_bucket_refills_no_further_than_its_burst():
    clock = Clock()
    bucket = TokenBucket(rate=100, burst=3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now += 3600
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


@pytest.mark.parametrize("process, processes", [(1, 1), (-1, 2), (0, 0), (256, 300)])
def test_process_numbers_outside_one_byte_or_the_count_are_refused(process, processes):
    with pytest.raises(ValueError):
        resets(process=process, processes=processes)


def test_a_reset_sent_unasked_is_a_usual_size_unpredictable_and_ends_with_the_token():
    policy = resets(process=1, processes=2)
    cid = policy.new_connection_id()
    announced = [policy.announcement(cid) for _ in range(30)]
    assert {len(reset) for reset in announced} <= set(range(43, 51))
    assert all(reset[0] & 0xC0 == 0x40 for reset in announced)
    assert all(reset[-TOKEN_SIZE:] == policy.reset_token(cid) for reset in announced)
    assert len({reset[:-TOKEN_SIZE] for reset in announced}) == 30
    assert policy.announced == 30 and policy.sent == 0


def test_resets_sent_unasked_share_the_rate_limit_and_wait_for_it():
    clock = Clock()
    policy = resets(bucket=TokenBucket(rate=10, burst=3, clock=clock))
    cid = policy.new_connection_id()
    assert policy.reset_for(short_packet(cid, 60), cid) is not None
    assert [policy.announcement(cid) is not None for _ in range(3)] == [True, True, False]
    assert policy.announced == 2 and policy.rate_limited == 0  # held back, not dropped
    clock.now += 0.15  # one more at 10 a second
    assert policy.announcement(cid) is not None
