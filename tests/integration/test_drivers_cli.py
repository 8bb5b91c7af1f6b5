"""`runtara-core drivers` and driver selection as a user sees them."""

from __future__ import annotations

import os

from tests.plugins import BROKEN_IMPORT, NOT_A_DRIVER, make_distribution
from tests.support import run_cli


def with_plugins(tmp_path):
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}


def test_drivers_lists_each_driver_with_its_package_version_and_module(tmp_path):
    result = run_cli("drivers", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert (
        "runtara-core 0.1.0" in lines["sqlite"]
        and "runtara.drivers.sqlite:SqliteDriver" in lines["sqlite"]
    )
    assert "runtara.drivers.postgres:PostgresDriver" in lines["postgres"]
    assert "postgres:, postgresql:" in lines["postgres"]


def test_drivers_names_each_broken_plugin_with_its_reason(tmp_path):
    make_distribution(
        tmp_path,
        "broken-plugin",
        {"broken": "broken_driver:Driver"},
        {"broken_driver": BROKEN_IMPORT},
    )
    make_distribution(
        tmp_path, "typo-plugin", {"typo": "typo_driver:Drvier"}, {"typo_driver": NOT_A_DRIVER}
    )
    result = run_cli("drivers", cwd=tmp_path, env=with_plugins(tmp_path))
    assert result.returncode == 1
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert "broken-plugin 1.0" in lines["broken"] and "BROKEN:" in lines["broken"]
    assert "libfoo.so.3" in lines["broken"]
    assert "has no attribute 'Drvier'" in lines["typo"]
    assert "BROKEN" not in lines["sqlite"]


def test_selecting_a_broken_plugin_is_one_clear_line(tmp_path):
    make_distribution(
        tmp_path,
        "broken-plugin",
        {"broken": "broken_driver:Driver"},
        {"broken_driver": BROKEN_IMPORT},
    )
    result = run_cli("--driver", "broken", "--port", "0", cwd=tmp_path, env=with_plugins(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "runtara-core: error: storage driver 'broken' (broken_driver:Driver) failed to import: "
        "ImportError: libfoo.so.3: cannot open shared object file"
    ]


def test_two_plugins_claiming_one_name_refuse_to_start(tmp_path):
    make_distribution(
        tmp_path, "shadow-sqlite", {"sqlite": "odd_driver:Something"}, {"odd_driver": NOT_A_DRIVER}
    )
    result = run_cli("--port", "0", cwd=tmp_path, env=with_plugins(tmp_path))
    assert result.returncode == 2
    assert "claimed by more than one package" in result.stderr
    assert "shadow-sqlite" in result.stderr and "runtara-core" in result.stderr
