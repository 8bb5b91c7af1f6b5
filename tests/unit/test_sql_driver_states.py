"""What the SQLite driver tells about its store without creating it: exists(),
check(), read-only runs, and its URL options."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest

from runtara import errors
from runtara.drivers.sqlite import SqliteDriver
from tests.driver_checks import assert_exists_only_once_migrated


@pytest.fixture
def missing(tmp_path):
    path = tmp_path / "nowhere" / "runtara.db"
    driver = SqliteDriver(f"sqlite:{path}")
    yield driver, path
    driver.close()


def test_a_missing_database_does_not_exist_and_asking_creates_nothing(missing):
    driver, path = missing
    assert driver.exists() is False
    with pytest.raises(errors.StorageUnavailable, match="there is no database file") as read:
        driver.run(lambda tx: tx.count_instances(), write=False)
    assert str(path) in str(read.value)
    with pytest.raises(errors.StorageUnavailable, match="there is no database file"):
        driver.check()
    assert not path.exists() and not path.parent.exists()


def test_a_database_exists_once_migrated(tmp_path):
    path = tmp_path / "runtara.db"
    sqlite3.connect(path).close()  # an empty SQLite file is not a runtara database
    assert_exists_only_once_migrated(SqliteDriver(f"sqlite:{path}"))


def test_a_file_that_is_not_a_database_is_unavailable(tmp_path):
    path = tmp_path / "runtara.db"
    path.write_bytes(b"not a database at all" * 100)
    driver = SqliteDriver(f"sqlite:{path}")
    try:
        with pytest.raises(errors.StorageUnavailable, match="not a database"):
            driver.exists()
        with pytest.raises(errors.StorageError, match="not a database"):
            driver.migrate()
    finally:
        driver.close()


def test_read_only_runs_see_the_writes_of_the_group(tmp_path):
    driver = SqliteDriver(f"sqlite:{tmp_path / 'runtara.db'}")
    try:
        driver.migrate()
        driver.run(lambda tx: tx.create_instance("i", "t", _now()))
        assert driver.run(lambda tx: tx.count_instances(), write=False) == 1
        with pytest.raises(errors.StorageError, match="readonly"):
            driver.run(lambda tx: tx.create_instance("j", "t", _now()), write=False)
    finally:
        driver.close()


@pytest.mark.parametrize(
    ("query", "expected"),
    [("", 256), ("?max_batch=1", 1), ("?max_batch=64&synchronous=normal", 64)],
)
def test_max_batch_is_a_url_option(tmp_path, query, expected):
    driver = SqliteDriver(f"sqlite:{tmp_path / 'runtara.db'}{query}")
    assert driver.max_batch == expected
    driver.close()


@pytest.mark.parametrize("value", ["0", "-1", "many", ""])
def test_a_bad_max_batch_is_a_config_error(tmp_path, value):
    with pytest.raises(errors.ConfigError, match="max_batch must be a whole number"):
        SqliteDriver(f"sqlite:{tmp_path / 'runtara.db'}?max_batch={value}")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
