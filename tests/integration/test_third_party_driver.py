"""A third-party driver package, installed for real: listed, proved by the kit, served."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import RpcClient, ServerProcess, run_cli

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "runtara-memory-driver"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    target = tmp_path_factory.mktemp("site-packages")
    # pip builds in the source folder: give it a copy, not the repository's tree
    source = tmp_path_factory.mktemp("source") / EXAMPLE.name
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    return {"PYTHONPATH": str(target)}


def test_the_installed_driver_is_listed(installed, tmp_path):
    result = run_cli("drivers", cwd=tmp_path, env=installed)
    assert result.returncode == 0, result.stdout + result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("memory ")]
    assert "runtara-memory-driver 1.0.0" in line and "runtara_memory:MemoryDriver" in line


def test_the_installed_driver_passes_the_conformance_kit(installed, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        cwd=tmp_path,
        env={**os.environ, **installed},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout


def test_the_server_runs_on_the_installed_driver(installed, tmp_path):
    server = ServerProcess("--driver", "memory", cwd=tmp_path, env=installed)
    try:
        assert "storage: memory" in server.output()
        client = RpcClient(server.address)
        assert client.register("in-memory").success
        assert not client.checkpoint("in-memory", "cp", b"state").checkpoint.found
        assert client.checkpoint("in-memory", "cp", b"other").checkpoint.state == b"state"
        client.close()
    finally:
        server.signal()
        assert server.wait() == 0
