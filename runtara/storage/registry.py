"""Discovery of storage drivers through the entry-point group ``runtara.drivers``.

Built-in drivers register through the same group as third-party packages; the
core never imports a driver by name. Loading is lazy: a plugin is imported only
when it is asked for (or listed), and a plugin that fails to import is reported
by name without hiding the others.
"""

from __future__ import annotations

import importlib
import logging
from importlib import metadata
from urllib.parse import urlsplit

import attrs

from runtara import errors
from runtara.storage import base

logger = logging.getLogger(__name__)

GROUP = "runtara.drivers"
DEFAULT_DRIVER = "sqlite"


@attrs.frozen
class DriverEntry:
    """One registration of a driver name."""

    name: str
    target: str
    """``module:attribute`` of the driver class."""
    distribution: str | None = None
    version: str | None = None


@attrs.frozen
class DriverInfo:
    entry: DriverEntry
    driver: type[base.StorageDriver] | None
    error: str | None
    """Why the driver cannot be used, or None."""


class DriverRegistry:
    """The drivers installed in this environment: the entry points of ``group``."""

    def __init__(self, group: str = GROUP) -> None:
        self._group = group

    def entries(self) -> dict[str, list[DriverEntry]]:
        """Every registration by name; more than one entry for a name is a conflict."""
        found: dict[str, list[DriverEntry]] = {}
        for point in metadata.entry_points(group=self._group):
            dist = getattr(point, "dist", None)
            entry = DriverEntry(
                name=point.name,
                target=point.value,
                distribution=dist.metadata["Name"] if dist is not None else None,
                version=dist.version if dist is not None else None,
            )
            same = found.setdefault(point.name, [])
            if entry not in same:
                same.append(entry)
        return dict(sorted(found.items()))

    def load(self, name: str) -> type[base.StorageDriver]:
        """The driver class registered as ``name``.

        Raises DriverNotFound (naming the installed drivers) for an unknown name,
        and DriverLoadFailed when two packages claim the name or the plugin is broken.
        """
        entries = self.entries()
        candidates = entries.get(name)
        if not candidates:
            installed = ", ".join(entries) or "none"
            raise errors.DriverNotFound(
                f"no storage driver named '{name}'; installed drivers: {installed}"
            )
        if len(candidates) > 1:
            owners = ", ".join(
                f"{entry.distribution or '?'} ({entry.target})" for entry in candidates
            )
            raise errors.DriverLoadFailed(
                f"storage driver name '{name}' is claimed by more than one package: {owners}; "
                "uninstall one of them"
            )
        return _import(candidates[0])

    def describe(self) -> list[DriverInfo]:
        """Every registration, loaded, with the reason for each that cannot be used."""
        infos: list[DriverInfo] = []
        for name, candidates in self.entries().items():
            for entry in candidates:
                if len(candidates) > 1:
                    infos.append(DriverInfo(entry, None, f"name '{name}' claimed twice"))
                    continue
                try:
                    infos.append(DriverInfo(entry, _import(entry), None))
                except errors.DriverLoadFailed as error:
                    infos.append(DriverInfo(entry, None, str(error)))
        return infos

    def name_for_url(self, url: str) -> str:
        """The driver whose ``url_schemes`` claim this URL's scheme.

        A URL without a scheme (a plain file path) belongs to the default driver.
        Raises DriverNotFound when no driver claims the scheme (naming the drivers
        that failed to load, one of which may have), DriverLoadFailed when several do.
        """
        scheme = urlsplit(url).scheme.lower() if ":" in url else ""
        if len(scheme) <= 1:  # no scheme, or a Windows drive letter
            return DEFAULT_DRIVER
        claimants = []
        broken = []
        for info in self.describe():
            if info.driver is None:
                broken.append(info.error)
            elif scheme in info.driver.url_schemes:
                claimants.append(info.entry.name)
        if not claimants:
            raise errors.DriverNotFound(
                f"no installed storage driver accepts URLs of scheme '{scheme}:'"
                + "".join(f"; not loaded: {reason}" for reason in broken)
            )
        if len(claimants) > 1:
            raise errors.DriverLoadFailed(
                f"URL scheme '{scheme}:' is claimed by several drivers ({', '.join(claimants)}); "
                "choose one with --driver"
            )
        for reason in broken:
            logger.warning("skipped while choosing a driver for '%s:': %s", scheme, reason)
        return claimants[0]


def _import(entry: DriverEntry) -> type[base.StorageDriver]:
    module_name, _, attribute = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise errors.DriverLoadFailed(
            f"storage driver '{entry.name}' ({entry.target}) failed to import: "
            f"{type(error).__name__}: {error}"
        ) from error
    try:
        driver = module
        for part in attribute.split(".") if attribute else ():
            driver = getattr(driver, part)
    except AttributeError:
        raise errors.DriverLoadFailed(
            f"storage driver '{entry.name}': module {module_name} has no attribute '{attribute}'"
        ) from None
    if not (isinstance(driver, type) and issubclass(driver, base.StorageDriver)):
        raise errors.DriverLoadFailed(
            f"storage driver '{entry.name}': {entry.target} is not a StorageDriver subclass"
        )
    return driver
