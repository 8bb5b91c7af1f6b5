from __future__ import annotations

import pytest

from runtara.testing.conformance import DriverConformance
from runtara.testing.memory import MemoryDriver


class TestMemoryDriver(DriverConformance):
    shared_between_processes = False

    @pytest.fixture
    def driver(self):
        driver = MemoryDriver(None, workers=16)
        yield driver
        driver.close()
