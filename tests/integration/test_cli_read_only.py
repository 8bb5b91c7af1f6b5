"""The commands that read or signal instances never create or migrate a database."""

from __future__ import annotations

import pytest

from tests.support import run_cli, sqlite_url

READ_ONLY = [
    ["instances"],
    ["show", "order-17"],
    ["checkpoints", "order-17"],
    ["events", "order-17"],
    ["signal", "order-17", "cancel"],
    ["custom-signal", "order-17", "approve"],
]


def missing(path) -> str:
    return (
        f"runtara-core: error: no runtara database at sqlite {path} (WAL, synchronous=FULL) "
        "(start the server or run `runtara-core migrate` first)"
    )


@pytest.mark.parametrize("command", READ_ONLY, ids=lambda command: command[0])
def test_in_an_empty_folder_a_command_says_which_database_it_looked_for(tmp_path, command):
    result = run_cli(*command, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [missing(tmp_path / "runtara.db")]
    assert list(tmp_path.iterdir()) == []


def test_health_reports_the_missing_database_as_unhealthy(tmp_path):
    result = run_cli("health", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        "unhealthy: " + missing(tmp_path / "runtara.db").removeprefix("runtara-core: error: ")
    ]
    assert list(tmp_path.iterdir()) == []


def test_a_configured_url_is_the_one_named(tmp_path):
    elsewhere = tmp_path / "data"
    elsewhere.mkdir()
    env = {"RUNTARA_DATABASE_URL": sqlite_url(elsewhere)}
    result = run_cli("instances", cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [missing(elsewhere / "runtara.db")]
    assert list(elsewhere.iterdir()) == []


def test_once_migrated_the_same_commands_work(tmp_path):
    assert run_cli("migrate", cwd=tmp_path).returncode == 0
    listing = run_cli("instances", cwd=tmp_path)
    assert listing.returncode == 0 and listing.stdout == "no instances\n"
    assert run_cli("health", cwd=tmp_path).returncode == 0
    unknown = run_cli("show", "order-17", cwd=tmp_path)
    assert unknown.returncode == 1
    assert unknown.stderr.splitlines() == ["runtara-core: error: Instance 'order-17' not found"]
