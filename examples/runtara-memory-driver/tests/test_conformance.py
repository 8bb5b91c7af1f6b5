"""The runtara-core conformance kit, run against this driver."""

from __future__ import annotations

import pytest
from runtara_memory import MemoryDriver

from runtara.testing.conformance import DriverConformance


class TestMemoryDriver(DriverConformance):
    shared_between_processes = False  # the store lives in one process's memory

    @pytest.fixture
    def driver(self):
        driver = MemoryDriver(None, workers=16)
        yield driver
        driver.close()
