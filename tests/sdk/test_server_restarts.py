"""Workflow scripts outlive their server: a graceful stop, a SIGKILL, a restart
on the same port and database; past RUNTARA_SERVER_WAIT they exit 75 without
reporting a failure."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import ServerProcess, wait_for

BLOCKING = """
    import logging, os, pathlib, time
    from runtara import sdk

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    RUNS = pathlib.Path(os.environ["RUNS_FILE"])
    GATES = pathlib.Path(os.environ["GATES"])

    def gate(name):
        while not (GATES / name).exists():
            time.sleep(0.02)

    @sdk.durable
    def step(name):
        with RUNS.open("a") as runs:
            runs.write(name + "\\n")
        return name

    def workflow(instance):
        done = [step("one")]
        for name in os.environ["GATED_STEPS"].split():
            gate(name)
            done.append(step(name))
        gate("end")
        return done

    sdk.main(workflow)
"""

ASYNCHRONOUS = """
    import asyncio, logging, os, pathlib
    from runtara import sdk

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    RUNS = pathlib.Path(os.environ["RUNS_FILE"])
    GATES = pathlib.Path(os.environ["GATES"])

    async def gate(name):
        while not (GATES / name).exists():
            await asyncio.sleep(0.02)

    @sdk.durable
    async def step(name):
        with RUNS.open("a") as runs:
            runs.write(name + "\\n")
        return name

    async def workflow(instance):
        done = [await step("one")]
        for name in os.environ["GATED_STEPS"].split():
            await gate(name)
            done.append(await step(name))
        await gate("end")
        return done

    sdk.main(workflow)
"""


class Script:
    """A workflow script run as its own process, with its stderr in a file; it waits
    at each gate until the test opens it."""

    def __init__(self, folder: Path, source: str, address, **environ: str) -> None:
        self.folder = folder
        self.runs = folder / "runs.txt"
        self.gates = folder / "gates"
        self.gates.mkdir()
        self.stderr = folder / "stderr.txt"
        path = folder / "workflow.py"
        path.write_text(textwrap.dedent(source))
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("RUNTARA_")},
            "RUNTARA_INSTANCE_ID": "restarts-1",
            "RUNTARA_TENANT_ID": "acme",
            "RUNTARA_SERVER_ADDR": "{}:{}".format(*address),
            "RUNTARA_SKIP_CERT_VERIFICATION": "true",
            "RUNTARA_CONNECT_TIMEOUT_MS": "1000",
            "RUNTARA_REQUEST_TIMEOUT_MS": "1000",  # a killed server is noticed this soon
            "RUNTARA_HEARTBEAT_INTERVAL_MS": "0",
            "RUNTARA_SERVER_WAIT": "60s",
            "RUNS_FILE": str(self.runs),
            "GATES": str(self.gates),
            "GATED_STEPS": "two three",
            **environ,
        }
        with self.stderr.open("w") as stderr:
            self.process = subprocess.Popen([sys.executable, str(path)], env=env, stderr=stderr)

    def open(self, gate: str) -> None:
        (self.gates / gate).touch()

    def ran(self) -> list[str]:
        return self.runs.read_text().split() if self.runs.exists() else []

    def log(self) -> str:
        return self.stderr.read_text()

    def waiting_count(self) -> int:
        return self.log().count("is unreachable")

    def wait_until(self, condition, timeout: float = 30) -> None:
        wait_for(lambda: condition() or self.process.poll() is not None, timeout)
        assert self.process.poll() is None, f"exited {self.process.returncode}:\n{self.log()}"

    def exit_code(self) -> int:
        return self.process.wait(60)

    def __enter__(self) -> Script:
        return self

    def __exit__(self, *exc_info) -> None:
        self.kill()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


class Servers:
    """runtara-core processes serving one SQLite file, one after another, on one port."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.database = folder / "runtara.db"
        self.current = ServerProcess("--database-url", str(self.database), cwd=folder)
        self.address = self.current.address

    def stop(self, how: int = signal.SIGTERM) -> None:
        self.current.signal(how)
        self.current.wait()

    def start_again(self) -> None:
        port = str(self.address[1])
        self.current = ServerProcess(
            "--database-url", str(self.database), "--port", port, cwd=self.folder
        )
        assert self.current.address == self.address

    def close(self) -> None:
        if self.current.process.poll() is None:
            self.stop()

    def row(self, instance_id: str = "restarts-1") -> sqlite3.Row:
        with sqlite3.connect(self.database) as database:
            database.row_factory = sqlite3.Row
            return database.execute(
                "SELECT * FROM instances WHERE instance_id = ?", (instance_id,)
            ).fetchone()

    def event_count(self, event_type: str, instance_id: str = "restarts-1") -> int:
        with sqlite3.connect(self.database) as database:
            return database.execute(
                "SELECT count(*) FROM instance_events WHERE instance_id = ? AND event_type = ?",
                (instance_id, event_type),
            ).fetchone()[0]


@pytest.fixture
def servers(tmp_path):
    running = Servers(tmp_path)
    yield running
    running.close()


def survives_a_stop_and_a_kill(servers: Servers, script: Script) -> None:
    with script:
        script.wait_until(lambda: script.ran() == ["one"])
        servers.stop(signal.SIGTERM)
        script.open("two")
        script.wait_until(lambda: script.waiting_count() == 1)
        servers.start_again()
        script.wait_until(lambda: script.ran() == ["one", "two"])
        servers.stop(signal.SIGKILL)
        script.open("three")
        script.open("end")
        script.wait_until(lambda: script.waiting_count() == 2)
        servers.start_again()
        assert script.exit_code() == 0, script.log()
    assert script.ran() == ["one", "two", "three"]  # each step's effect happened once
    row = servers.row()
    assert (row["status"], json.loads(row["output"])) == ("completed", ["one", "two", "three"])
    log = script.log()
    # one warning when each outage began and one line when it ended, however many calls waited
    assert log.count("is unreachable") == 2 and log.count("is back after") == 2, log
    assert "Traceback" not in log


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_blocking_script_outlives_a_stopped_and_a_killed_server(servers, tmp_path):
    survives_a_stop_and_a_kill(servers, Script(tmp_path, BLOCKING, servers.address))


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_an_async_script_with_heartbeats_outlives_them_too(servers, tmp_path):
    script = Script(tmp_path, ASYNCHRONOUS, servers.address, RUNTARA_HEARTBEAT_INTERVAL_MS="100")
    survives_a_stop_and_a_kill(servers, script)
    assert "heartbeat" not in script.log()  # the heartbeat waits quietly


@pytest.mark.timeout(60)
def test_past_the_wait_the_script_exits_75_and_the_instance_is_not_failed(servers, tmp_path):
    with Script(tmp_path, BLOCKING, servers.address, RUNTARA_SERVER_WAIT="1500ms") as script:
        script.wait_until(lambda: script.ran() == ["one"])
        servers.stop(signal.SIGTERM)
        script.open("two")
        assert script.exit_code() == 75
    assert script.ran() == ["one"]
    assert servers.row()["status"] == "running"
    assert servers.event_count("failed") == 0
    last = script.log().strip().splitlines()[-1]
    assert last.startswith("ERROR stopping: lost the server, so nothing is reported; exit code 75")
    assert "get_checkpoint: cannot connect to" in last


@pytest.mark.timeout(60)
def test_the_completed_report_is_repeated_until_the_server_takes_it(servers, tmp_path):
    with Script(tmp_path, BLOCKING, servers.address, GATED_STEPS="") as script:
        script.wait_until(lambda: script.ran() == ["one"])
        servers.stop(signal.SIGTERM)
        script.open("end")  # the workflow returns: its report finds no server
        script.wait_until(lambda: script.waiting_count() == 1)
        assert servers.row()["status"] == "running"
        servers.start_again()
        assert script.exit_code() == 0, script.log()
    row = servers.row()
    assert (row["status"], json.loads(row["output"])) == ("completed", ["one"])
    assert "instance_event: " in script.log()  # the report was the call that waited
