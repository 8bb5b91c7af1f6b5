from __future__ import annotations

import pytest

from runtara.drivers.postgres import PostgresDriver
from runtara.testing.conformance import DriverConformance


class TestPostgresDriver(DriverConformance):
    @pytest.fixture
    def driver(self, postgres_url):
        driver = PostgresDriver(postgres_url, workers=16)
        yield driver
        driver.close()
