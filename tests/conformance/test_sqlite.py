from __future__ import annotations

import functools

import pytest

from runtara.drivers.sqlite import SqliteDriver
from runtara.testing.conformance import DriverConformance


class TestSqliteDriver(DriverConformance):
    @pytest.fixture
    def driver_factory(self, tmp_path):
        return functools.partial(SqliteDriver, f"sqlite:{tmp_path / 'conformance.db'}", workers=16)

    @pytest.fixture
    def driver(self, driver_factory):
        driver = driver_factory()
        yield driver
        driver.close()
