"""PostgreSQL as a user meets it: several servers on one database, restarts, outages, bad URLs."""

from __future__ import annotations

import datetime as dt
import threading
import time

import psycopg
import pytest

from runtara import errors
from runtara.drivers.postgres import PostgresDriver
from runtara.protocol import instance_pb2 as pb
from runtara.storage import migrations
from tests.driver_checks import assert_exists_only_once_migrated, assert_refuses_writes
from tests.support import LoopbackServer, RpcClient, ServerProcess, run_cli, wait_for


@pytest.fixture
def two_servers(postgres_url, tmp_path):
    servers = [ServerProcess("--database-url", postgres_url, cwd=tmp_path) for _ in range(2)]
    yield servers
    for server in servers:
        server.signal()
        server.wait()


def race(clients, call):
    barrier = threading.Barrier(len(clients))
    results = [None] * len(clients)

    def run(index):
        barrier.wait()
        results[index] = call(clients[index], index)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_two_servers_on_one_database_store_each_checkpoint_exactly_once(two_servers):
    clients = [RpcClient(two_servers[i % 2].address) for i in range(16)]
    try:
        assert clients[0].register("shared").success
        for round_number in range(5):
            checkpoint_id = f"race-{round_number}"
            replies = race(
                clients,
                lambda client, i, checkpoint_id=checkpoint_id: (
                    client.checkpoint("shared", checkpoint_id, f"{i}".encode()).checkpoint
                ),
            )
            winners = [i for i, reply in enumerate(replies) if not reply.found]
            assert len(winners) == 1, replies
            assert {reply.state for reply in replies if reply.found} == {f"{winners[0]}".encode()}
            for client in clients[:2]:  # one client of each server reads the same state
                got = client.get_checkpoint("shared", checkpoint_id).get_checkpoint
                assert got.state == f"{winners[0]}".encode()
    finally:
        for client in clients:
            client.close()


def test_two_servers_hand_a_custom_signal_to_exactly_one_caller(two_servers, postgres_url):
    clients = [RpcClient(two_servers[i % 2].address) for i in range(16)]
    try:
        assert clients[0].register("approver").success
        driver = PostgresDriver(postgres_url, workers=1)
        now = dt.datetime.now(dt.timezone.utc)
        driver.run(lambda tx: tx.put_custom_signal("approver", "approve", b"yes", now))
        driver.close()
        replies = race(clients, lambda client, i: client.poll("approver", "approve"))
        taken = [
            reply.custom_signal.payload for reply in replies if reply.HasField("custom_signal")
        ]
        assert taken == [b"yes"]
    finally:
        for client in clients:
            client.close()


def test_two_servers_agree_on_the_final_status(two_servers):
    clients = [RpcClient(two_servers[i % 2].address) for i in range(8)]
    try:
        assert clients[0].register("finisher").success
        replies = race(
            clients,
            lambda client, i: client.event("finisher", pb.EVENT_COMPLETED, f"out-{i}".encode()),
        )
        winners = [i for i, reply in enumerate(replies) if reply.HasField("instance_event")]
        assert len(winners) == 1
        assert all(
            reply.error.code == "INSTANCE_EVENT_ERROR"
            for reply in replies
            if reply.HasField("error")
        )
        status = clients[1].status("finisher")
        assert (
            status.status == pb.STATUS_COMPLETED and status.output == f"out-{winners[0]}".encode()
        )
    finally:
        for client in clients:
            client.close()


def test_a_database_restart_fails_requests_in_flight_and_then_recovers(
    postgres_cluster, postgres_url
):
    with LoopbackServer(postgres_url) as server:
        client = server.client()
        assert client.register("survivor").success
        for index in range(20):
            assert not client.checkpoint("survivor", f"before-{index}", b"kept").HasField("error")
        postgres_cluster.stop("fast")
        try:
            reply = client.checkpoint("survivor", "during", b"x")
            assert reply.error.code == "CHECKPOINT_ERROR"
            assert (
                "unavailable" in reply.error.message.lower()
                or "connection" in reply.error.message.lower()
            )
        finally:
            postgres_cluster.start()

        def succeeds():
            reply = client.checkpoint("survivor", "after", b"y")
            return not reply.HasField("error")

        wait_for(succeeds, timeout=30)
        for index in range(20):
            assert (
                client.get_checkpoint("survivor", f"before-{index}").get_checkpoint.state == b"kept"
            )
        assert server.server.stats()["connections"] == 1  # no restart of runtara-core


def test_requests_after_a_database_restart_answer_clearly_then_succeed(
    postgres_cluster, postgres_url
):
    with LoopbackServer(postgres_url) as server:
        client = server.client()
        assert client.register("steady").success
        postgres_cluster.restart()  # every pooled connection is now dead
        replies = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            reply = client.call(
                get_instance_status=pb.GetInstanceStatusRequest(instance_id="steady")
            )
            replies.append(reply)
            if reply.HasField("get_instance_status"):
                break
            time.sleep(0.1)
        assert replies[-1].get_instance_status.status == pb.STATUS_RUNNING
        for failed in replies[:-1]:
            assert failed.error.code == "GET_INSTANCE_STATUS_ERROR"
            assert "Database unavailable" in failed.error.message


def test_start_up_against_an_unreachable_database_is_one_clear_line(tmp_path):
    result = run_cli(
        "--database-url", "postgresql://postgres@127.0.0.1:1/runtara", "--port", "0", cwd=tmp_path
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert (
        len(lines) == 1
        and "cannot connect to postgresql://postgres@127.0.0.1:1/runtara" in lines[0]
    )
    assert "Traceback" not in result.stderr


def test_a_wrong_database_url_is_one_clear_line(postgres_cluster, tmp_path):
    url = f"postgresql://nobody@127.0.0.1:{postgres_cluster.port}/nowhere"
    result = run_cli("--database-url", url, "--port", "0", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "nobody" in lines[0]


def test_runtara_database_url_alone_selects_postgres(postgres_url, tmp_path):
    server = ServerProcess(
        cwd=tmp_path,
        env={"RUNTARA_DATABASE_URL": postgres_url.replace("postgresql://", "postgres://")},
    )
    try:
        assert "storage: postgresql://postgres@127.0.0.1" in server.output()
        client = RpcClient(server.address)
        assert client.register("via-env").success
        client.close()
    finally:
        server.signal()
        assert server.wait() == 0


def test_an_edited_migration_refuses_to_start_naming_the_file(postgres_url, tmp_path):
    PostgresDriver(postgres_url, workers=1).migrate()
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("UPDATE runtara_migrations SET checksum = 'edited' WHERE version = 1")
    with pytest.raises(errors.MigrationError, match="0001_initial.sql was edited"):
        PostgresDriver(postgres_url, workers=1).migrate()
    result = run_cli("--database-url", postgres_url, "--port", "0", cwd=tmp_path)
    assert result.returncode == 1 and "0001_initial.sql was edited" in result.stderr


def test_concurrent_starts_migrate_once(postgres_url):
    results = []

    def start():
        driver = PostgresDriver(postgres_url, workers=1)
        results.append(driver.migrate())
        driver.close()

    threads = [threading.Thread(target=start) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    shipped = len(migrations.load("postgresql"))
    assert sorted(len(applied) for applied in results) == [0, 0, 0, 0, shipped]


def test_migrate_command(postgres_url, tmp_path):
    first = run_cli("migrate", "--database-url", postgres_url, cwd=tmp_path)
    shipped = ", ".join(migration.name for migration in migrations.load("postgresql"))
    assert first.returncode == 0 and first.stdout.strip().endswith(f": applied {shipped}")
    again = run_cli("migrate", "--database-url", postgres_url, cwd=tmp_path)
    assert again.returncode == 0 and "up to date" in again.stdout


def test_a_url_without_a_database_is_refused_for_postgres(tmp_path):
    result = run_cli("--driver", "postgres", "--port", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert "the postgres driver needs --database-url / RUNTARA_DATABASE_URL" in result.stderr


def read_only(url: str) -> str:
    """The URL with every transaction read-only, as on a standby."""
    return url + "%20-cdefault_transaction_read_only%3Don"


def test_exists_says_whether_the_schema_was_migrated(postgres_url):
    assert_exists_only_once_migrated(PostgresDriver(postgres_url, workers=1))
    with pytest.raises(errors.StorageUnavailable, match="cannot connect"):
        PostgresDriver("postgresql://postgres@127.0.0.1:1/runtara", workers=1).exists()


def test_a_database_that_accepts_no_writes_is_refused_at_start(postgres_url, tmp_path):
    PostgresDriver(postgres_url, workers=1).migrate()
    url = read_only(postgres_url)
    assert_refuses_writes(PostgresDriver(url, workers=1), "read-only transaction")
    result = run_cli("--database-url", url, "--port", "0", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "read-only transaction" in lines[0]
