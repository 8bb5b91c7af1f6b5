"""`runtara-core bench` runs briefly and reports well-formed figures (never a target)."""

from __future__ import annotations

import json

import pytest

from tests.support import run_cli

QUICK = ["--duration", "1", "--warmup", "0.2", "--connections", "4", "--json"]


def figures(result) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def well_formed(figure: dict) -> None:
    assert figure["operations"] > 0 and figure["ops_per_second"] > 0
    assert figure["errors"] == 0, figure["first_error"]
    assert 0 < figure["p50_ms"] <= figure["p90_ms"] <= figure["p99_ms"] <= figure["max_ms"]


def test_checkpoint_scenario_with_every_baseline(tmp_path):
    report = figures(run_cli("bench", *QUICK, cwd=tmp_path, timeout=180))
    median = report["median"]
    assert set(median) == {"echo", "naive", "checkpoint", "storage"}
    for figure in median.values():
        well_formed(figure)
    assert median["checkpoint"]["server_cpu_us_per_op"] > 0
    assert median["checkpoint"]["server_peak_rss_mib"] > 0
    assert median["checkpoint"]["rows_per_commit"] >= 1
    ratios = report["ratios"]["checkpoint"]
    assert set(ratios) == {"echo", "naive", "storage"} and all(r > 0 for r in ratios.values())
    assert len(report["runs"]) == 1


@pytest.mark.parametrize("scenario", ["resume", "lifecycle", "large"])
def test_other_scenarios(tmp_path, scenario):
    report = figures(
        run_cli(
            "bench",
            *QUICK,
            "--scenario",
            scenario,
            "--baselines",
            "echo",
            "--state-size",
            "4096",
            cwd=tmp_path,
            timeout=120,
        )
    )
    well_formed(report["median"][scenario])
    assert report["ratios"][scenario]["echo"] > 0


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
    well_formed(figure)
    assert figure["server_cpu_us_per_op"] is None  # not our process: no CPU figure
