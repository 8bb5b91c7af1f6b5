from __future__ import annotations

import importlib

import pytest

from runtara import errors
from runtara.storage import registry
from tests.plugins import BROKEN_IMPORT, NOT_A_DRIVER, make_distribution


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    return tmp_path


def test_the_builtin_sqlite_driver_comes_through_its_entry_point():
    entries = registry.DriverRegistry().entries()
    (entry,) = entries["sqlite"]
    assert entry.target == "runtara.drivers.sqlite:SqliteDriver"
    assert entry.distribution == "runtara-core"
    driver = registry.DriverRegistry().load("sqlite")
    assert driver.__name__ == "SqliteDriver" and driver.url_schemes == ("sqlite",)


def test_unknown_name_lists_the_installed_drivers():
    with pytest.raises(
        errors.DriverNotFound, match=r"no storage driver named 'nope'; installed drivers: .*sqlite"
    ):
        registry.DriverRegistry().load("nope")


def test_a_plugin_that_fails_to_import_is_named_and_hides_nothing(plugins):
    make_distribution(
        plugins,
        "broken-plugin",
        {"broken": "broken_driver:Driver"},
        {"broken_driver": BROKEN_IMPORT},
    )
    drivers = registry.DriverRegistry()
    with pytest.raises(
        errors.DriverLoadFailed,
        match=r"'broken' \(broken_driver:Driver\) failed to import: ImportError: libfoo",
    ):
        drivers.load("broken")
    assert drivers.load("sqlite").__name__ == "SqliteDriver"
    infos = {info.entry.name: info for info in drivers.describe()}
    assert infos["broken"].driver is None and "libfoo" in infos["broken"].error
    assert infos["sqlite"].error is None


def test_a_missing_attribute_is_reported(plugins):
    make_distribution(
        plugins, "typo-plugin", {"typo": "typo_driver:Drvier"}, {"typo_driver": NOT_A_DRIVER}
    )
    with pytest.raises(
        errors.DriverLoadFailed, match="module typo_driver has no attribute 'Drvier'"
    ):
        registry.DriverRegistry().load("typo")


def test_an_entry_point_that_is_not_a_driver_class_is_refused(plugins):
    make_distribution(
        plugins, "odd-plugin", {"odd": "odd_driver:Something"}, {"odd_driver": NOT_A_DRIVER}
    )
    with pytest.raises(errors.DriverLoadFailed, match="is not a StorageDriver subclass"):
        registry.DriverRegistry().load("odd")


def test_two_packages_claiming_one_name_is_an_error_not_a_silent_pick(plugins):
    make_distribution(
        plugins, "fake-sqlite", {"sqlite": "odd_driver:Something"}, {"odd_driver": NOT_A_DRIVER}
    )
    with pytest.raises(
        errors.DriverLoadFailed,
        match="claimed by more than one package: .*fake-sqlite.*runtara-core|claimed by more than one package: .*runtara-core.*fake-sqlite",
    ):
        registry.DriverRegistry().load("sqlite")


def test_a_third_party_distribution_registers_a_driver_through_its_entry_point(plugins):
    make_distribution(
        plugins, "alt-sqlite", {"alt": "runtara.drivers.sqlite.driver:SqliteDriver"}, {}
    )
    drivers = registry.DriverRegistry()
    (entry,) = drivers.entries()["alt"]
    assert entry == registry.DriverEntry(
        "alt", "runtara.drivers.sqlite.driver:SqliteDriver", "alt-sqlite", "1.0"
    )
    assert drivers.load("alt").__name__ == "SqliteDriver"
    assert drivers.entries()["sqlite"][0].distribution == "runtara-core"


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("sqlite:x.db", "sqlite"),
        ("sqlite:///tmp/x.db", "sqlite"),
        ("x.db", "sqlite"),
        ("/abs/x.db", "sqlite"),
    ],
)
def test_url_scheme_selects_the_driver(url, name):
    assert registry.DriverRegistry().name_for_url(url) == name


def test_a_url_scheme_no_driver_claims_is_an_error():
    with pytest.raises(errors.DriverNotFound, match="scheme 'redis:'$"):
        registry.DriverRegistry().name_for_url("redis://localhost/0")


def test_an_unclaimed_scheme_names_the_drivers_that_failed_to_load(plugins):
    make_distribution(
        plugins,
        "broken-plugin",
        {"broken": "broken_driver:Driver"},
        {"broken_driver": BROKEN_IMPORT},
    )
    with pytest.raises(errors.DriverNotFound) as raised:
        registry.DriverRegistry().name_for_url("redis://localhost/0")
    assert str(raised.value) == (
        "no installed storage driver accepts URLs of scheme 'redis:'; not loaded: "
        "storage driver 'broken' (broken_driver:Driver) failed to import: "
        "ImportError: libfoo.so.3: cannot open shared object file"
    )
    assert "pip install" not in str(raised.value)


def test_a_broken_plugin_does_not_stop_a_claimed_scheme(plugins, caplog):
    make_distribution(
        plugins,
        "broken-plugin",
        {"broken": "broken_driver:Driver"},
        {"broken_driver": BROKEN_IMPORT},
    )
    assert registry.DriverRegistry().name_for_url("postgresql://db/x") == "postgres"
    assert "failed to import" in caplog.text
