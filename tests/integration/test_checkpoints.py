"""Checkpoints on each real driver over QUIC: racing first writes, and a failure mid-way."""

from __future__ import annotations

import threading

from runtara import records

FAILURE_TRIGGER = {
    "sqlite": "CREATE TRIGGER boom BEFORE UPDATE OF checkpoint_id ON instances "
    "WHEN NEW.checkpoint_id = 'doomed' BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
    "postgres": "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "IF NEW.checkpoint_id = 'doomed' THEN RAISE EXCEPTION 'injected failure'; END IF; "
    "RETURN NEW; END $$; CREATE TRIGGER boom BEFORE UPDATE OF checkpoint_id ON instances "
    "FOR EACH ROW EXECUTE FUNCTION boom();",
}


def test_a_storage_failure_leaves_nothing_half_written(server, client, running):
    # A trigger makes the second write of the operation (moving the instance's
    # checkpoint_id) fail after the checkpoint row was inserted.
    server.execute_sql(FAILURE_TRIGGER[server.kind])
    reply = client.checkpoint(running, "doomed", b"x")
    assert reply.error.code == "CHECKPOINT_ERROR"
    assert "injected failure" in reply.error.message
    assert server.read(lambda tx: tx.get_checkpoint(running, "doomed")) is None
    # and the server carries on
    assert not client.checkpoint(running, "fine", b"y").checkpoint.found
    assert server.instance(running).status is records.InstanceStatus.RUNNING


def test_concurrent_first_checkpoints_store_exactly_one_state(server, running):
    clients = [server.client() for _ in range(8)]
    barrier = threading.Barrier(len(clients))
    replies = [None] * len(clients)

    def race(index):
        barrier.wait()
        replies[index] = (
            clients[index].checkpoint(running, "race", f"state-{index}".encode()).checkpoint
        )

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [i for i, reply in enumerate(replies) if not reply.found]
    assert len(winners) == 1
    stored = f"state-{winners[0]}".encode()
    assert all(reply.state == stored for reply in replies if reply.found)
    assert server.read(lambda tx: tx.get_checkpoint(running, "race")).state == stored
