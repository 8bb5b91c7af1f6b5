from __future__ import annotations

import functools

import pytest

from runtara.drivers.postgres import PostgresDriver
from runtara.testing.conformance import DriverConformance


class TestPostgresDriver(DriverConformance):
    @pytest.fixture
    def driver_factory(self, postgres_url):
        return functools.partial(PostgresDriver, postgres_url, workers=16)

    @pytest.fixture
    def driver(self, driver_factory):
        driver = driver_factory()
        yield driver
        driver.close()
