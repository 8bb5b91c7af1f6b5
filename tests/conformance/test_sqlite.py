from __future__ import annotations

import pytest

from runtara.drivers.sqlite import SqliteDriver
from runtara.testing.conformance import DriverConformance


class TestSqliteDriver(DriverConformance):
    @pytest.fixture
    def driver(self, tmp_path):
        driver = SqliteDriver(f"sqlite:{tmp_path / 'conformance.db'}", workers=16)
        yield driver
        driver.close()
