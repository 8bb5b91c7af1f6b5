"""Every package of the source tree ships, and resources resolve once installed."""

from __future__ import annotations

import configparser
from importlib import metadata, resources
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def declared_packages() -> set[str]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    return {line.strip() for line in parser["options"]["packages"].splitlines() if line.strip()}


def source_packages() -> set[str]:
    found = set()
    for top, name in (
        ("runtara", "runtara"),
        ("drivers", "runtara.drivers"),
        ("sql", "runtara.migrations"),
    ):
        for init in (ROOT / top).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((name, *relative)))
    return found


def test_setup_cfg_lists_every_package():
    assert declared_packages() == source_packages()


def test_migrations_and_entry_points_resolve_in_the_installed_package():
    assert resources.files("runtara.migrations").joinpath("sqlite", "0001_initial.sql").is_file()
    names = {point.name for point in metadata.entry_points(group="runtara.drivers")}
    assert "sqlite" in names
    scripts = {point.name: point.value for point in metadata.entry_points(group="console_scripts")}
    assert scripts["runtara-core"] == "runtara.cli:main"
