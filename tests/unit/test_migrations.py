from __future__ import annotations

import sqlite3
import sys
import threading

import pytest

from runtara import errors
from runtara.drivers.sqlite import SqliteDriver
from runtara.storage import migrations


@pytest.fixture
def migration_package(tmp_path, monkeypatch):
    """An importable package ``shipped`` with a ``sqlite`` folder to put files in."""
    package = tmp_path / "shipped"
    (package / "sqlite").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "shipped", raising=False)
    return package / "sqlite"


def test_load_reads_numbered_files_in_order_next_to_the_named_queries(migration_package):
    (migration_package / "0002_more.sql").write_text("CREATE TABLE b (x);")
    (migration_package / "0001_first.sql").write_text("CREATE TABLE a (x);")
    (migration_package / "queries.sql").write_text("-- name: q\nSELECT 1\n")
    loaded = migrations.load("sqlite", package="shipped")
    assert [(m.version, m.name, m.sql) for m in loaded] == [
        (1, "0001_first.sql", "CREATE TABLE a (x);"),
        (2, "0002_more.sql", "CREATE TABLE b (x);"),
    ]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (["0001_first.sql", "0003_gap.sql"], "found 0003_gap.sql where number 2 was expected"),
        (["0001_first.sql", "2_short.sql"], "2_short.sql is not named NNNN_description.sql"),
        (["0001_First.sql"], "0001_First.sql is not named NNNN_description.sql"),
        ([], "no migrations found for sqlite"),
    ],
)
def test_load_refuses_a_bad_file_set(migration_package, files, message):
    for name in files:
        (migration_package / name).write_text("SELECT 1;")
    with pytest.raises(errors.MigrationError, match=message):
        migrations.load("sqlite", package="shipped")


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_every_dialect_ships_the_same_migration_numbers(dialect):
    numbers = [m.version for m in migrations.load(dialect)]
    assert numbers == [m.version for m in migrations.load("sqlite")]


def test_migrate_applies_once_and_records_checksums(tmp_path):
    driver = SqliteDriver(f"sqlite:{tmp_path / 'db.sqlite'}")
    assert driver.migrate() == [m.name for m in migrations.load("sqlite")]
    assert driver.migrate() == []
    rows = (
        sqlite3.connect(tmp_path / "db.sqlite")
        .execute("SELECT version, name, checksum FROM runtara_migrations")
        .fetchall()
    )
    assert [(v, n, c) for v, n, c in rows] == [
        (m.version, m.name, m.checksum) for m in migrations.load("sqlite")
    ]
    driver.close()


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        (
            "UPDATE runtara_migrations SET checksum = 'feedbeef' WHERE version = 1",
            "0001_initial.sql was edited after it was applied",
        ),
        (
            "INSERT INTO runtara_migrations VALUES (99, '0099_future.sql', 'x', 'now')",
            "0099_future.sql applied, which this version",
        ),
    ],
    ids=["an-edited-applied-migration-naming-the-file", "a-database-from-a-newer-version"],
)
def test_applied_migrations_this_version_does_not_have_are_refused(tmp_path, change, refusal):
    path = tmp_path / "db.sqlite"
    SqliteDriver(f"sqlite:{path}").migrate()
    database = sqlite3.connect(path)
    database.execute(change)
    database.commit()
    with pytest.raises(errors.MigrationError, match=refusal):
        SqliteDriver(f"sqlite:{path}").migrate()


def test_concurrent_migrations_apply_each_file_once(tmp_path):
    path = tmp_path / "db.sqlite"
    results, failures = [], []

    def start():
        try:
            results.append(SqliteDriver(f"sqlite:{path}").migrate())
        except Exception as error:  # pragma: no cover - reported below
            failures.append(error)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sorted(len(applied) for applied in results)[-1] == len(migrations.load("sqlite"))
    assert sum(len(applied) for applied in results) == len(migrations.load("sqlite"))


def test_pending_checks_naming_and_gaps(tmp_path, monkeypatch):
    available = migrations.load("sqlite")
    applied = {1: migrations.AppliedMigration(1, available[0].name, available[0].checksum)}
    assert migrations.pending(available, applied) == available[1:]
