"""Choosing and constructing the configured driver."""

from __future__ import annotations

from runtara import config
from runtara.storage import base, registry


def driver_name(storage: config.StorageConfig, drivers: registry.DriverRegistry) -> str:
    """``--driver`` if given, else the driver claiming the URL's scheme, else sqlite."""
    if storage.driver is not None:
        return storage.driver
    if storage.database_url is not None:
        return drivers.name_for_url(storage.database_url)
    return registry.DEFAULT_DRIVER


def open_driver(
    storage: config.StorageConfig,
    *,
    workers: int,
    drivers: registry.DriverRegistry | None = None,
) -> base.StorageDriver:
    """Construct the configured driver (no I/O yet); raises DriverError or ConfigError."""
    drivers = drivers or registry.DriverRegistry()
    driver_class = drivers.load(driver_name(storage, drivers))
    return driver_class(storage.database_url, workers=workers)
