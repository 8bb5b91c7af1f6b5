"""Checks of what a storage driver says about its store: exists(), check() and
migrate(), the same on every driver."""

from __future__ import annotations

import pytest

from runtara import errors


def assert_exists_only_once_migrated(driver) -> None:
    """On a store without the runtara schema, exists() is False and check() says
    so until migrate(); after it, both pass. Closes the driver."""
    try:
        assert driver.exists() is False
        with pytest.raises(errors.StorageUnavailable, match="runtara_migrations"):
            driver.check()
        driver.migrate()
        assert driver.exists() is True
        driver.check()
    finally:
        driver.close()


def assert_refuses_writes(driver, message: str) -> None:
    """On a migrated store that can be read but not written, exists() is True,
    and check() and migrate() refuse with ``message``. Closes the driver."""
    try:
        assert driver.exists() is True  # reading works, and changes nothing
        with pytest.raises(errors.StorageUnavailable, match=message):
            driver.check()
        with pytest.raises(errors.StorageUnavailable, match=message):
            driver.migrate()
    finally:
        driver.close()
