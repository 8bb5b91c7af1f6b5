"""A launched ``python`` is the server's own, even when its environment was not activated."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from runtara import records
from runtara.config import StorageConfig
from runtara.launcher import processes
from runtara.storage import selection
from tests.support import ServerProcess, sqlite_url, start_by_cli, wait_for

WORKFLOWS = Path(__file__).parent.parent / "workflows"
pytestmark = pytest.mark.skipif(
    sys.prefix == sys.base_prefix,
    reason="the folder goes first for a server in a virtual environment; these tests run in none",
)


def decoy_python(folder: Path) -> Path:
    """A folder with a ``python`` that has no runtara, as a system Python would be."""
    decoy = folder / "decoy-bin"
    decoy.mkdir()
    script = decoy / "python"
    script.write_text("#!/bin/sh\necho 'decoy python: no module named runtara' >&2\nexit 1\n")
    script.chmod(0o755)
    return decoy


def test_python_in_a_command_is_the_servers_when_its_path_lacks_the_environment(tmp_path):
    decoy = decoy_python(tmp_path)
    path = f"{decoy}{os.pathsep}{os.defpath}"  # the server's environment not activated
    url = sqlite_url(tmp_path)
    server = ServerProcess(
        "--database-url",
        url,
        "--runs-dir",
        str(tmp_path / "runs"),
        cwd=tmp_path,
        env={"PATH": path},
    )
    storage = selection.open_driver(StorageConfig(database_url=url), workers=2)
    try:

        def start(instance_id: str, *flags: str) -> records.Instance:
            start_by_cli(
                url,
                instance_id,
                "--max-failures",
                "1",
                *flags,
                "--",
                "python",
                str(WORKFLOWS / "echo_input.py"),
                cwd=tmp_path,
                env={"PATH": path},
            )

            def finished():
                found = storage.run(lambda tx: tx.get_instance(instance_id), write=False)
                return found.status.is_terminal and found

            return wait_for(finished, 60)

        found = start("servers-python")
        assert found.status is records.InstanceStatus.COMPLETED, found.error
        # The decoy is really there to be found: a PATH the instance sets is used as given.
        decoyed = start("own-path", f"--env=PATH={path}")
        assert decoyed.status is records.InstanceStatus.FAILED
        assert "decoy python: no module named runtara" in decoyed.error
    finally:
        storage.close()
        server.signal(signal.SIGTERM)
        assert server.wait() == 0, server.output()


def test_the_servers_folder_goes_first_once():
    folder = os.path.dirname(sys.executable)
    assert processes.server_bin_first("/usr/bin:/bin") == f"{folder}:/usr/bin:/bin"
    assert processes.server_bin_first(f"{folder}:/bin") == f"{folder}:/bin"
    # later on the PATH is not first: a python before it would win
    assert processes.server_bin_first(f"/bin:{folder}") == f"{folder}:/bin:{folder}"
    assert processes.server_bin_first(None) == f"{folder}:{os.defpath}"
