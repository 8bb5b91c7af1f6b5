"""The example scripts run as child processes against a ``runtara-core`` child process
serving a fresh SQLite file on loopback, exactly as the README tells users to run them."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ServerProcess, run_cli, sqlite_url, wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class Deployment:
    """A server and the environment the examples run in; every file lives in ``folder``,
    what the examples write in ``output_dir``."""

    def __init__(self, folder: Path, *server_args: str) -> None:
        self.folder = folder
        self.output_dir = folder / "output"
        self.database_url = sqlite_url(folder)
        self.server = ServerProcess("--database-url", self.database_url, *server_args, cwd=folder)
        host, port = self.server.address
        self.env = {
            **os.environ,
            "RUNTARA_TENANT_ID": "acme",
            "RUNTARA_SERVER_ADDR": f"{host}:{port}",
            "RUNTARA_SKIP_CERT_VERIFICATION": "true",
            "EXAMPLES_OUTPUT_DIR": str(self.output_dir),
        }

    def start(self, example: str, instance_id: str, stdout: Path, **env: str) -> subprocess.Popen:
        """``python examples/<example>.py`` as instance ``instance_id``, printing to ``stdout``."""
        with stdout.open("w") as output:
            return subprocess.Popen(
                [sys.executable, str(EXAMPLES / f"{example}.py")],
                cwd=self.folder,
                env={**self.env, "RUNTARA_INSTANCE_ID": instance_id, **env},
                stdout=output,
            )

    def run(self, example: str, instance_id: str, stdout: Path, **env: str) -> int:
        """Run the example to its end; its exit code."""
        return self.start(example, instance_id, stdout, **env).wait(60)

    def cli(self, *args: str) -> str:
        """``runtara-core ARGS`` on this server's database; its output (it must succeed)."""
        result = run_cli(*args, "--database-url", self.database_url, cwd=self.folder)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def query(self, sql: str, *parameters: object) -> list[sqlite3.Row]:
        with sqlite3.connect(self.database_url.removeprefix("sqlite:")) as database:
            database.row_factory = sqlite3.Row
            return database.execute(sql, parameters).fetchall()

    def instance(self, instance_id: str) -> sqlite3.Row:
        (row,) = self.query("SELECT * FROM instances WHERE instance_id = ?", instance_id)
        return row

    def status(self, instance_id: str) -> str:
        return self.instance(instance_id)["status"]

    def output(self, instance_id: str) -> object:
        return json.loads(self.instance(instance_id)["output"])

    def stop(self) -> None:
        self.server.signal()
        assert self.server.wait() == 0, self.server.output()


@pytest.fixture
def deployment(tmp_path):
    running = Deployment(tmp_path)
    yield running
    running.stop()


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def time_of(text: str) -> dt.datetime:
    """A time as the SQLite driver stores it."""
    return dt.datetime.fromisoformat(text)


def wait_while_running(process: subprocess.Popen, condition, timeout: float = 30) -> None:
    """Wait until ``condition()``; fail at once if ``process`` ends first."""
    wait_for(lambda: condition() or process.poll() is not None, timeout)
    assert process.poll() is None, f"the script ended early (exit code {process.returncode})"
