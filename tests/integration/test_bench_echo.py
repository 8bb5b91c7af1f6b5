"""The ``echo`` baseline leaves nothing behind in the folder it runs from."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

from tests.support import RpcClient


def test_the_echo_baseline_keeps_its_runs_folder_to_itself_and_removes_it(tmp_path):
    work, scratch = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    scratch.mkdir()
    echo = subprocess.Popen(
        [sys.executable, "-m", "runtara.bench.echo", "--port", "0"],
        cwd=work,
        env={**os.environ, "TMPDIR": str(scratch)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        host, port = re.search(r"listening on ([\d.]+):(\d+)", echo.stdout.readline()).groups()
        (runs,) = scratch.iterdir()
        assert sorted(path.name for path in runs.iterdir()) == [
            f"connections-{port}-0.journal",
            "stateless-reset.key",
        ]
        client = RpcClient((host, int(port)))
        try:
            assert client.register("inst-1").success
        finally:
            client.close()
    finally:
        echo.send_signal(signal.SIGTERM)
        assert echo.wait(30) == 0
        echo.stdout.close()
    assert list(work.iterdir()) == []
    assert list(scratch.iterdir()) == []
