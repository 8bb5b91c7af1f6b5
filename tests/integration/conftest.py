"""The launching servers the integration tests start: one per test, stopped after it."""

from __future__ import annotations

import pytest

from tests.integration.test_launcher import Launching
from tests.support import sqlite_url


@pytest.fixture
def launcher_flags() -> tuple[str, ...]:
    """Flags the launching servers below get besides the usual ones (a test module
    that needs more overrides this)."""
    return ()


@pytest.fixture
def either(tmp_path, database_url, launcher_flags):
    """A launching server on each driver in turn (``database_url`` gives both)."""
    running = Launching(tmp_path, database_url, *launcher_flags)
    yield running
    running.stop()


@pytest.fixture
def launching(tmp_path, launcher_flags):
    """A launching server on SQLite."""
    running = Launching(tmp_path, sqlite_url(tmp_path), *launcher_flags)
    yield running
    running.stop()
