"""``/metrics`` after a known load: every counter equals what the load did, read
with prometheus_client's own parser, from one server process and from any
process of ``--processes 2``."""

from __future__ import annotations

import asyncio
import socket

import pytest
from prometheus_client.parser import text_string_to_metric_families

from runtara.bench import run as bench_run
from runtara.protocol import instance_pb2 as pb
from tests.browser.serving import READ_TOKEN, HttpServing
from tests.support import RpcClient, run_cli, wait_for

BURST = 40


def scrape(serving: HttpServing) -> dict[tuple[str, tuple], float]:
    """Every sample of ``/metrics``, scraped with the read credential: (name, sorted
    labels) -> value."""
    reply = serving.get("/metrics", **serving.bearer("read"))
    assert reply.status == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
    }


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def requests(samples, operation: str, outcome: str, protocol: str = "instance") -> float:
    return value(
        samples, "runtara_requests_total", protocol=protocol, operation=operation, outcome=outcome
    )


def storage_counters(address) -> dict[str, float]:
    """The server's GetStats counters, through its management service."""
    return asyncio.run(bench_run.counters(address, READ_TOKEN))


def burst(client: RpcClient, instance_id: str) -> list[pb.RpcResponse]:
    """BURST checkpoints sent at once (each on its own stream), their replies."""

    async def send_all():
        calls = [
            client.connection.call(
                pb.RpcRequest(
                    checkpoint=pb.CheckpointRequest(
                        instance_id=instance_id, checkpoint_id=f"burst-{n}", state=b"b" * 50
                    )
                ),
                pb.RpcResponse,
                timeout=10,
            )
            for n in range(BURST)
        ]
        return await asyncio.gather(*calls)

    return client.loop.run(send_all())


@pytest.fixture
def serving(tmp_path, database_url):
    running = HttpServing(
        tmp_path,
        "--database-url",
        database_url,
        "--no-launcher",
        "--max-concurrent",
        "1",
        "--max-pending",
        "0",
        "--management-addr",
        "127.0.0.1:0",
    )
    yield running
    assert running.stop() == 0


def test_every_counter_equals_what_the_load_did(serving):
    first, second = RpcClient(serving.server.address), RpcClient(serving.server.address)
    try:
        for instance_id in ("a", "b", "c"):
            assert first.register(instance_id).success
        assert not first.checkpoint("a", "s1", b"1" * 100).HasField("error")
        assert not first.checkpoint("a", "s2", b"2" * 250).HasField("error")
        assert not first.checkpoint("b", "s1", b"3" * 10).HasField("error")
        assert first.checkpoint("a", "s1", b"ignored").checkpoint.found  # stores nothing
        assert first.checkpoint("ghost", "s1", b"x").error.code == "CHECKPOINT_ERROR"
        assert second.register("c").success  # fences the first client's registration of c
        assert first.checkpoint("c", "s1", b"x").error.code == "SUPERSEDED"
        replies = burst(first, "b")
        overloaded = sum(r.error.code == "OVERLOADED" for r in replies)
        stored = sum(r.WhichOneof("response") == "checkpoint" for r in replies)
        assert overloaded + stored == BURST and overloaded > 0

        storage = storage_counters(serving.server.management_address())
        samples = scrape(serving)
    finally:
        first.close()
        second.close()

    assert requests(samples, "register_instance", "ok") == 4
    assert requests(samples, "checkpoint", "ok") == 4 + stored
    assert requests(samples, "checkpoint", "error") == 1
    assert requests(samples, "checkpoint", "superseded") == 1
    assert requests(samples, "checkpoint", "overloaded") == overloaded
    assert requests(samples, "get_stats", "ok", protocol="management") == 1
    ran = 4 + stored + 1 + 1  # every checkpoint a worker ran
    count = "runtara_request_duration_seconds_count"
    assert value(samples, count, protocol="instance", operation="checkpoint") == ran
    assert (
        value(
            samples,
            "runtara_request_duration_seconds_bucket",
            protocol="instance",
            operation="checkpoint",
            le="+Inf",
        )
        == ran
    )
    assert value(samples, "runtara_checkpoints_stored_total") == 3 + stored
    assert value(samples, "runtara_checkpoint_bytes_stored_total") == 360 + 50 * stored
    connections = "runtara_connections_total"
    assert value(samples, connections, protocol="instance", outcome="accepted") == 2
    assert value(samples, connections, protocol="management", outcome="accepted") == 1
    assert value(samples, "runtara_instances", status="running") == 3
    assert value(samples, "runtara_instances", status="completed") == 0
    commits = "runtara_storage_writes_per_commit"
    if serving.url.startswith("postgres"):  # each write its own commit
        driver, committed, writes = "postgresql", 4 + 4 + stored, 4 + 4 + stored
    else:  # SQLite's write groups, as the driver itself counted them
        driver = "sqlite"
        committed, writes = storage["storage_commits"], storage["storage_transactions"]
    assert value(samples, f"{commits}_count", driver=driver) == committed
    assert value(samples, f"{commits}_sum", driver=driver) == writes
    duration = "runtara_storage_commit_duration_seconds_count"
    assert value(samples, duration, driver=driver) == committed
    assert value(samples, "runtara_storage_healthy") == 1
    assert value(samples, "runtara_server_processes") == 1
    assert value(samples, "runtara_server_cpu_seconds_total") > 0
    assert value(samples, "runtara_server_resident_memory_bytes") > 10 * 2**20
    assert value(samples, "runtara_requests_running") == 0
    assert value(samples, "runtara_requests_parked") == 0


def free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_any_process_of_two_answers_with_the_whole_servers_figures(tmp_path):
    port = free_tcp_port()
    serving = HttpServing(
        tmp_path, "--processes", "2", "--no-launcher", http_addr=f"127.0.0.1:{port}"
    )
    clients = []
    try:
        serving.logged("serving HTTP on")
        wait_for(lambda: sum("serving HTTP on" in line for line in serving.server.log) == 2, 30)
        clients = [RpcClient(serving.server.address) for _ in range(6)]
        for number, client in enumerate(clients):
            assert client.register(f"p{number}").success
            for step in range(number + 1):
                assert not client.checkpoint(f"p{number}", f"s{step}", b"x" * 10).HasField("error")
        stored = sum(number + 1 for number in range(6))
        scrapes = [scrape(serving) for _ in range(8)]
    finally:
        for client in clients:
            client.close()
        assert serving.stop() == 0
    for samples in scrapes:
        assert requests(samples, "register_instance", "ok") == 6
        assert requests(samples, "checkpoint", "ok") == stored
        assert value(samples, "runtara_checkpoints_stored_total") == stored
        assert value(samples, "runtara_checkpoint_bytes_stored_total") == 10 * stored
        assert value(samples, "runtara_instances", status="running") == 6
        assert value(samples, "runtara_server_processes") == 2


def test_a_metrics_folder_that_is_not_one_stops_the_server_with_one_line(tmp_path):
    missing = tmp_path / "no-such-folder"
    refused = run_cli(
        "--port",
        "0",
        "--no-launcher",
        "--http-addr",
        "127.0.0.1:0",
        cwd=tmp_path,
        env={"PROMETHEUS_MULTIPROC_DIR": str(missing)},
    )
    assert refused.returncode == 2
    assert f"error: PROMETHEUS_MULTIPROC_DIR='{missing}' is not a folder" in refused.stderr
