"""The commands that read or signal instances never create or migrate a database:
without a server running here and without a store named, they say so."""

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
NO_SERVER = (
    "runtara-core: error: no runtara-core server of this user runs on this machine (start "
    "one with `runtara-core`), and no --server or --database-url says where else to act"
)


def missing(path) -> str:
    return (
        f"runtara-core: error: no runtara database at sqlite {path} (WAL, synchronous=FULL) "
        "(start a server on it, or run `runtara-core migrate --database-url ...` to create it)"
    )


@pytest.mark.parametrize("command", READ_ONLY, ids=lambda command: command[0])
def test_with_no_server_running_a_command_says_so_and_creates_nothing(tmp_path, command):
    result = run_cli(*command, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [NO_SERVER]
    assert list(tmp_path.iterdir()) == []


def test_health_with_no_server_running_is_unhealthy(tmp_path):
    result = run_cli("health", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == ["unhealthy: " + NO_SERVER.split("error: ", 1)[1]]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", READ_ONLY, ids=lambda command: command[0])
def test_a_named_store_that_is_missing_is_named_and_not_created(tmp_path, command):
    elsewhere = tmp_path / "data"
    elsewhere.mkdir()
    result = run_cli(*command, cwd=tmp_path, env={"RUNTARA_DATABASE_URL": sqlite_url(elsewhere)})
    assert result.returncode == 1
    assert result.stderr.splitlines() == [missing(elsewhere / "runtara.db")]
    assert list(elsewhere.iterdir()) == []


def test_once_migrated_the_same_commands_work_on_the_store(tmp_path):
    store = ("--database-url", sqlite_url(tmp_path))
    assert run_cli("migrate", *store, cwd=tmp_path).returncode == 0
    listing = run_cli("instances", *store, cwd=tmp_path)
    assert listing.returncode == 0 and listing.stdout == "no instances\n"
    assert run_cli("health", *store, cwd=tmp_path).returncode == 0
    unknown = run_cli("show", "order-17", *store, cwd=tmp_path)
    assert unknown.returncode == 1
    assert unknown.stderr.splitlines() == ["runtara-core: error: Instance 'order-17' not found"]


def test_prune_needs_its_store_named(tmp_path):
    result = run_cli("prune", "--finished-before", "1d", cwd=tmp_path)
    assert result.returncode == 2 and "prune works on a store: name it" in result.stderr
    assert list(tmp_path.iterdir()) == []
