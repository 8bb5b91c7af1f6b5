"""Checkpoint and GetCheckpoint over QUIC."""

from __future__ import annotations


def test_first_checkpoint_is_saved_and_readable(server, client, running):
    reply = client.checkpoint(running, "cp-1", b"state-1").checkpoint
    assert not reply.found and reply.state == b""
    got = client.get_checkpoint(running, "cp-1").get_checkpoint
    assert got.found and got.state == b"state-1"
    assert server.instance(running).checkpoint_id == "cp-1"
    status = client.status(running)
    assert status.checkpoint_id == "cp-1"


def test_second_checkpoint_of_an_id_returns_the_original_state(server, client, running):
    client.checkpoint(running, "cp", b"original")
    reply = client.checkpoint(running, "cp", b"different").checkpoint
    assert reply.found and reply.state == b"original"
    assert client.get_checkpoint(running, "cp").get_checkpoint.state == b"original"


def test_resume_does_not_move_the_instance_checkpoint_id(server, client, running):
    client.checkpoint(running, "one", b"1")
    client.checkpoint(running, "two", b"2")
    client.checkpoint(running, "one", b"again")
    assert server.instance(running).checkpoint_id == "two"


def test_unknown_checkpoint_is_not_found(client, running):
    got = client.get_checkpoint(running, "never").get_checkpoint
    assert not got.found and got.state == b""


def test_ids_are_independent_and_sequential_ids_all_stored(client, running):
    for index in range(5):
        assert not client.checkpoint(
            running, f"step-{index}", f"s{index}".encode()
        ).checkpoint.found
    for index in range(5):
        assert (
            client.get_checkpoint(running, f"step-{index}").get_checkpoint.state
            == f"s{index}".encode()
        )


def test_state_sizes_and_binary_bytes_round_trip(client, running):
    for checkpoint_id, state in (
        ("empty", b""),
        ("binary", bytes([0x00, 0xFF, 0x80, 0x7F, 0xFE, 0x01, 0x00, 0x00])),
        ("megabyte", bytes(range(256)) * 3907 + b"1234"),
    ):
        client.checkpoint(running, checkpoint_id, state)
        got = client.get_checkpoint(running, checkpoint_id).get_checkpoint
        assert got.found and got.state == state
    assert len(state) == 1_000_196


def test_checkpoint_survives_reconnecting(server, client, running):
    client.checkpoint(running, "cp", b"kept")
    client.close()
    other = server.client()
    reply = other.checkpoint(running, "cp", b"new").checkpoint
    assert reply.found and reply.state == b"kept"


def test_checkpoints_are_scoped_per_instance(client, running):
    client.register("other")
    client.checkpoint(running, "shared-id", b"mine")
    assert not client.get_checkpoint("other", "shared-id").get_checkpoint.found


def test_checkpoint_of_unknown_instance_is_an_error(client):
    reply = client.checkpoint("ghost", "cp", b"x")
    assert reply.error.code == "CHECKPOINT_ERROR"
    assert reply.error.message == "Instance 'ghost' not found"


def test_checkpoint_needs_a_running_instance(server, client, running):
    client.event(running, 2, b"done")  # completed
    reply = client.checkpoint(running, "cp", b"x")
    assert reply.error.code == "CHECKPOINT_ERROR"
    assert reply.error.message == (
        f"Instance '{running}' is in invalid state: expected 'running', got 'completed'"
    )


def test_get_checkpoint_needs_only_an_existing_instance(client, running):
    client.checkpoint(running, "cp", b"x")
    client.event(running, 2)
    assert client.get_checkpoint(running, "cp").get_checkpoint.state == b"x"
    reply = client.get_checkpoint("ghost", "cp")
    assert reply.error.code == "GET_CHECKPOINT_ERROR" and "not found" in reply.error.message


def test_retry_attempts_are_recorded_as_checkpoint_rows(server, client, running):
    from runtara.protocol import instance_pb2 as pb

    client.no_reply(
        retry_attempt=pb.RetryAttemptEvent(
            instance_id=running,
            checkpoint_id="durable::fetch::7",
            attempt_number=2,
            error_message="timeout",
        )
    )
    row = server.read(lambda tx: tx.get_checkpoint(running, "durable::fetch::7::retry::2"))
    assert row is not None and row.state == b"timeout"
    got = client.get_checkpoint(running, "durable::fetch::7::retry::2").get_checkpoint
    assert got.found
