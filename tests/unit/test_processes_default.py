"""``--processes`` by default: one per core this process may use."""

from __future__ import annotations

import argparse

import pytest

from runtara import config


def cgroup_tree(tmp_path, quotas: dict[str, str]):
    """A cgroup v2 tree under tmp_path with ``cpu.max`` files, and a membership file
    placing this process in /a/b."""
    root = tmp_path / "cgroup"
    for group, quota in quotas.items():
        folder = root / group.lstrip("/")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "cpu.max").write_text(quota + "\n")
    (root / "a" / "b").mkdir(parents=True, exist_ok=True)
    membership = tmp_path / "membership"
    membership.write_text("1:name=systemd:/\n0::/a/b\n")
    return root, membership


@pytest.fixture
def eight_cores(monkeypatch):
    monkeypatch.setattr(config.os, "sched_getaffinity", lambda pid: set(range(8)))


@pytest.mark.parametrize(
    ("quotas", "cores"),
    [
        ({}, 8),  # no quota files
        ({"/a/b": "max 100000"}, 8),
        ({"/a/b": "200000 100000"}, 2),
        ({"/a/b": "150000 100000"}, 2),  # 1.5 cores: both are used
        ({"/a/b": "50000 100000"}, 1),
        ({"/a": "300000 100000", "/a/b": "max 100000"}, 3),  # a parent's quota counts
        ({"/a": "max 100000", "/a/b": "1600000 100000"}, 8),  # the affinity is less
    ],
)
def test_usable_cores_are_the_affinity_within_the_cgroup_quota(
    tmp_path, eight_cores, quotas, cores
):
    root, membership = cgroup_tree(tmp_path, quotas)
    assert config.usable_cores(root, membership) == cores


def test_without_a_cgroup_v2_membership_the_affinity_counts(tmp_path, eight_cores):
    assert config.usable_cores(tmp_path, tmp_path / "absent") == 8
    membership = tmp_path / "v1-only"
    membership.write_text("4:cpu:/x\n")
    assert config.usable_cores(tmp_path, membership) == 8


@pytest.mark.parametrize(("cores", "processes"), [(1, 1), (2, 2), (8, 8), (96, 64)])
def test_processes_default_to_one_per_usable_core(monkeypatch, cores, processes):
    monkeypatch.setattr(config, "usable_cores", lambda: cores)
    assert config.ServerConfig().processes == processes
    given = config.server_config(argparse.Namespace(processes="3"), {})
    assert given.processes == 3
    from_environment = config.server_config(argparse.Namespace(), {"RUNTARA_PROCESSES": "1"})
    assert from_environment.processes == 1
