"""`runtara-core bench` runs briefly and reports well-formed figures (never a target)."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from runtara import cli
from tests.support import LoopbackServer, RpcClient, run_cli, sqlite_url

QUICK = ["--duration", "1", "--warmup", "0.2", "--connections", "4", "--json"]
BOUNDS = (None, "client", "machine", "client+machine")


def figures(result) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def well_formed(figure: dict) -> None:
    assert figure["operations"] > 0 and figure["ops_per_second"] > 0
    assert figure["errors"] == 0, figure["first_error"]
    assert 0 < figure["p50_ms"] <= figure["p90_ms"] <= figure["p99_ms"] <= figure["max_ms"]
    assert 0 <= figure["machine_idle_pct"] <= 100 and figure["other_cpu_cores"] >= 0
    assert figure["bound"] in BOUNDS and (figure["bound"] is None) == (figure["saturation"] is None)


def loaded_by_clients(figure: dict, processes: int) -> None:
    well_formed(figure)
    assert figure["client_processes"] == processes
    assert figure["client_cpu_us_per_op"] > 0 and figure["client_core_pct"] > 0


def test_checkpoint_scenario_with_every_baseline(tmp_path):
    report = figures(run_cli("bench", *QUICK, cwd=tmp_path, timeout=180))
    median = report["median"]
    assert set(median) == {"echo", "naive", "checkpoint", "storage"}
    for name in ("echo", "naive", "checkpoint"):
        loaded_by_clients(median[name], 1)
        assert median[name]["server_cpu_us_per_op"] > 0
        assert median[name]["state_size"] == 1024 and median[name]["scenario"] == "checkpoint"
    assert median["checkpoint"]["server_peak_rss_mib"] > 0
    assert median["checkpoint"]["rows_per_commit"] >= 1
    assert median["checkpoint"]["round_trips_per_op"] is None  # SQLite sends none
    well_formed(median["storage"])
    assert median["storage"]["server_cpu_us_per_op"] > 0
    assert median["storage"]["client_processes"] is None
    ratios = report["ratios"]["checkpoint"]
    assert set(ratios) == {"echo", "naive", "storage"} and all(r > 0 for r in ratios.values())
    assert len(report["runs"]) == 1


def test_postgresql_counts_one_round_trip_per_checkpoint(tmp_path, postgres_url):
    args = ["bench", *QUICK, "--database-url", postgres_url, "--baselines", "storage"]
    median = figures(run_cli(*args, cwd=tmp_path, timeout=180))["median"]
    for name in ("checkpoint", "storage"):
        well_formed(median[name])
    assert median["storage"]["round_trips_per_op"] == 1.0
    # the server's launcher and wake scheduler poll the database in between
    assert 1.0 <= median["checkpoint"]["round_trips_per_op"] < 1.2
    assert median["checkpoint"]["rows_per_commit"] is None


def test_each_scenario_runs_on_its_own_baselines(tmp_path):
    # large is 64 KiB among other scenarios too
    report = figures(
        run_cli(
            "bench",
            *QUICK,
            "--count",
            # enough operations that the clients' CPU time is more than one clock tick
            "200",
            "--scenario=lifecycle",
            "--scenario=large",
            "--baselines",
            "echo",
            cwd=tmp_path,
            timeout=180,
        )
    )
    median = report["median"]
    assert set(median) == {"echo/lifecycle", "lifecycle", "echo/large", "large"}
    for name, size in (("lifecycle", 1024), ("large", 65536)):
        for figure in (median[name], median[f"echo/{name}"]):
            loaded_by_clients(figure, 1)
            assert figure["operations"] == 200
            assert (figure["scenario"], figure["state_size"]) == (name, size)
        assert set(report["ratios"][name]) == {"echo"}


def test_client_processes_share_the_load_with_progress_on_a_terminal(tmp_path):
    terminal, stderr = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-m", "runtara", "bench", *QUICK, "--duration", "1.5", "--warmup", "1"]
        + ["--scenario", "resume", "--client-processes", "2", "--baselines", "storage"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=stderr,
    ) as process:
        os.close(stderr)
        progress = bytearray()
        while True:
            try:
                chunk = os.read(terminal, 4096)
            except OSError:  # the bench closed the terminal: it ended
                break
            if not chunk:
                break
            progress += chunk
        os.close(terminal)
        output = process.stdout.read()
        assert process.wait(60) == 0, progress.decode()[-3000:]
    report = json.loads(output)
    loaded_by_clients(report["median"]["resume"], 2)
    well_formed(report["median"]["storage/resume"])
    assert report["median"]["storage/resume"]["scenario"] == "resume"
    lines = progress.decode().splitlines()
    assert "resume: 4 connections from 2 client processes connect and prepare" in lines
    ticks = [line for line in lines if re.match(r"\s+resume: (warm-up|measured)\s+[\d.]+ s", line)]
    assert len([line for line in ticks if "warm-up" in line]) >= 1
    assert len([line for line in ticks if "measured" in line]) >= 2
    assert all("ops/s" in line and "client" in line for line in ticks)


def test_failed_operations_are_counted_apart_from_throughput(tmp_path):
    # one worker and no waiting room: most of the 6 instances' requests are refused
    crowded = LoopbackServer(sqlite_url(tmp_path), max_concurrent=1, max_pending=0)
    try:
        host, port = crowded.address
        report = figures(
            run_cli(
                "bench",
                "--server",
                f"{host}:{port}",
                "--baselines",
                "none",
                "--connections",
                "6",
                "--count",
                "30",
                "--warmup",
                "0",
                "--json",
                cwd=tmp_path,
                timeout=120,
            )
        )
    finally:
        crowded.stop()
    figure = report["median"]["checkpoint"]
    assert figure["operations"] == 30  # successes only
    assert figure["errors"] > 0 and figure["first_error"].startswith("OVERLOADED")


@pytest.mark.parametrize("kind", ["echo", "runtara"])
def test_serve_for_an_outside_client(tmp_path, kind):
    process = subprocess.Popen(
        [sys.executable, "-m", "runtara", "bench", "--serve", kind, "--port", "0"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = process.stdout.readline()
        found = re.match(rf"{kind} listening on ([\d.]+):(\d+) \(Ctrl-C stops it\)", first)
        assert found, first + process.stderr.read()
        client = RpcClient((found.group(1), int(found.group(2))))
        try:
            assert client.register("outside").success
            started, step = time.monotonic(), 0
            while time.monotonic() - started < 1.2:
                assert not client.checkpoint("outside", f"cp-{step}", b"x" * 100).HasField("error")
                step += 1
        finally:
            client.close()
        time.sleep(1.1)  # the second of the last requests is reported
        process.send_signal(signal.SIGINT)
        output, errors = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, errors
    lines = output.splitlines()
    assert any(
        re.match(r"\s+[\d,]+ requests/s  server CPU\s+[\d,]+ µs per request", ln) for ln in lines
    )
    summary = re.match(rf"{kind}: ([\d,]+) requests in \d+ s with requests", lines[-1])
    assert summary and int(summary.group(1).replace(",", "")) == step + 1, output


def test_idle_memory_and_the_table(tmp_path):
    result = run_cli(
        "bench",
        "--scenario",
        "idle",
        "--idle-connections",
        "20",
        "--baselines",
        "none",
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("idle connections: 20, server RSS per connection ")


def test_against_a_running_server(server, tmp_path):
    host, port = server.address
    report = figures(
        run_cli(
            "bench",
            *QUICK,
            "--server",
            f"{host}:{port}",
            "--baselines",
            "none",
            cwd=tmp_path,
            timeout=120,
        )
    )
    figure = report["median"]["checkpoint"]
    loaded_by_clients(figure, 1)
    assert figure["server_cpu_us_per_op"] is None  # not our process: no CPU figure


def _udp_port() -> tuple[socket.socket, int]:
    bound = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    bound.bind(("127.0.0.1", 0))
    return bound, bound.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--connections", "2", "--client-processes", "3"], 2, "--client-processes 3: at most"),
        (["--client-processes", "0"], 2, "argument --client-processes"),
        (["--port", "18001"], 2, "--host and --port go with --serve"),
        (["--scenario", "idle", "--server", "127.0.0.1:1"], 2, "not with --server"),
        (["--serve", "echo", "--port", "70000"], 2, "'70000' is not a port"),
        (["--state-size", "-1"], 2, "'-1' is not a state size"),
        (["--server", "127.0.0.1:{closed}", "--baselines", "none"], 1, "client process 1: cannot"),
        (["--serve", "echo", "--port", "{taken}"], 1, "the server did not start"),
        (["--instances", "10"], 2, "--instances goes with --scenario data"),
        (["--scenario", "data", "--scenario", "resume"], 2, "--scenario data runs on its own"),
        (["--scenario", "data", "--server", "127.0.0.1:1"], 2, "--scenario data runs on its own"),
        (["--scenario", "data", "--instances", "0"], 2, "argument --instances"),
    ],
)
def test_bad_arguments_get_a_clear_error(monkeypatch, capsys, args, code, message):
    monkeypatch.chdir(os.path.dirname(__file__))  # nothing is written for a refusal
    taken, taken_port = _udp_port()
    closed, closed_port = _udp_port()
    closed.close()  # nothing listens there: the handshake is refused at once
    try:
        try:
            returned = cli.main(
                ["bench", *(arg.format(taken=taken_port, closed=closed_port) for arg in args)]
            )
        except SystemExit as exit:
            returned = exit.code
    finally:
        taken.close()
    stderr = capsys.readouterr().err
    assert returned == code, stderr
    assert message in stderr


def test_a_saturated_client_or_machine_is_said_plainly():
    from runtara.bench import cpu, report
    from runtara.bench.tally import LoadResult

    def use(clients: tuple[float, ...], busy: float, idle: float) -> cpu.Use:
        return cpu.Use(10.0, 6.0, clients, machine_busy=busy, machine_idle=idle, cores=2)

    assert cpu.saturation(use((4.0, 4.5), busy=14.5, idle=5.5)) == {}
    client_bound = cpu.saturation(use((9.7,), busy=16.0, idle=4.0))
    assert client_bound == {
        "client": "client-bound: the client used 97 % of a core per process (1 process); "
        "the figure measures the client too"
    }
    both = cpu.saturation(use((9.5, 9.5), busy=19.9, idle=0.1))
    assert set(both) == {"client", "machine"}
    assert both["machine"].startswith("machine-bound: 0 % of the 2 cores was idle")
    result = LoadResult(operations=1000, errors=0, seconds=10.0, latencies=[0.01] * 1000)
    figure = report.figures("echo", result, use((9.5, 9.5), busy=19.9, idle=0.1))
    assert (figure.bound, figure.client_core_pct, figure.client_cpu_us_per_op) == (
        "client+machine",
        95.0,
        19000.0,
    )
    table = report.render({"echo": figure}, {}, "title").splitlines()
    assert table[1].split()[-6] == "bound" and table[2].split()[-4] == "client+machine"
    assert table[3] == f"echo: {figure.saturation}"


DATA = ["--scenario", "data", "--instances", "2000", "--duration", "1", "--warmup", "0.2"]
DATA += ["--connections", "4", "--json"]


def well_timed(timing: dict) -> None:
    assert timing["count"] > 0
    assert 0 < timing["p50_ms"] <= timing["p99_ms"] <= timing["max_ms"]


@pytest.mark.slow
def test_the_data_scenario_measures_an_empty_and_a_loaded_store(tmp_path, database_url):
    from runtara.bench import data

    report = figures(
        run_cli("bench", *DATA, "--database-url", database_url, cwd=tmp_path, timeout=600)
    )
    assert report["size"] == {"finished": 2000, "sleeping": 200, "pending": 20}
    load = report["load"]
    # 3 checkpoints and 4 events per finished instance, 2 and 3 per sleeper; a
    # launch for every other finished and sleeping instance and every pending one
    assert load["rows"] == {
        "instances": 2220,
        "checkpoints": 6400,
        "instance_events": 8600,
        "instance_launches": 1120,
    }
    assert load["seconds"] > 0
    assert load["rows_per_second"] == pytest.approx(sum(load["rows"].values()) / load["seconds"])
    checkpoint = report["checkpoint"]
    for name in ("empty", "loaded", "prune"):
        well_formed(checkpoint[name])
        assert checkpoint[name]["scenario"] == "checkpoint"
    ratios = report["ratios"]
    assert ratios["throughput_loaded_to_empty"] == pytest.approx(
        checkpoint["loaded"]["ops_per_second"] / checkpoint["empty"]["ops_per_second"]
    )
    assert ratios["p99_prune_to_loaded"] == pytest.approx(
        checkpoint["prune"]["p99_ms"] / checkpoint["loaded"]["p99_ms"]
    )
    for store in ("empty", "loaded"):
        ticks = report["ticks"][store]
        assert set(ticks) == {"lapsed", "wake", "claim", "stale", "tick"}
        for timing in ticks.values():
            well_timed(timing)
            assert timing["count"] == data.TICKS
        reads = report["reads"][store]
        for name in ("instances first page", "instances next pages", "console list page", "show"):
            well_timed(reads[name])
    # 2000 instances at 50 a page: the pages followed all had a next one
    assert report["reads"]["loaded"]["instances next pages"]["count"] == data.PAGES_FOLLOWED
    assert report["reads"]["loaded"]["show"]["count"] == data.SHOWN
    pruned = report["prune"]
    assert pruned["instances"] == 2000 and pruned["batches"] == 4
    assert pruned["instances_per_second"] == pytest.approx(2000 / pruned["seconds"])


def test_the_data_scenario_needs_an_empty_store(tmp_path):
    from tests.support import sqlite_url

    url = sqlite_url(tmp_path)
    server = LoopbackServer(url)
    try:
        server.client().register("already-here", "t")
    finally:
        server.stop()
    result = run_cli("bench", *DATA, "--database-url", url, cwd=tmp_path, timeout=120)
    assert result.returncode == 1
    assert "the data scenario needs an empty store" in result.stderr
