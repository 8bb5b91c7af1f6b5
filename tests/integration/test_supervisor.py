"""The parent of ``--processes N``: signals that arrive while it starts a server
process, and orphans handed to it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from tests.support import process_runs, run_cli, sqlite_url, wait_for

SIGNAL_INSIDE_POPEN = """
import os, signal, subprocess, sys
from pathlib import Path
from runtara import config, credentials
from runtara.server import supervisor

folder, at = Path(sys.argv[1]), int(sys.argv[2])
real_popen = subprocess.Popen
started = []

def popen(*args, **kwargs):
    child = real_popen(*args, **kwargs)
    started.append(child.pid)
    print("started", child.pid, flush=True)
    if len(started) == at:
        # Handled before this returns: after the fork, before the parent records the child.
        os.kill(os.getpid(), signal.SIGTERM)
    return child

supervisor.subprocess.Popen = popen
settings = config.ServerConfig(
    processes=2, host="127.0.0.1", port=0, database_url=f"sqlite:{folder / 'runtara.db'}",
    launcher=False, runs_dir=folder / "runs",
)
credentials = credentials.generate()
print("returned", supervisor.supervise(settings, credentials, "sqlite", 0o022), flush=True)
"""
"""Runs the parent with a SIGTERM delivered inside its ``at``-th Popen."""

AS_SUBREAPER = """
import ctypes, os, sys
if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
    sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed")
os.execv(sys.executable, [sys.executable, "-m", "runtara", *sys.argv[1:]])
"""
"""``runtara-core`` as a child subreaper (kept across exec): orphans of its
descendants are handed to it, as they are to PID 1 in a container."""


def parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except FileNotFoundError:
        return None


@pytest.mark.parametrize("at", [1, 2], ids=["first start", "second start"])
def test_a_signal_handled_while_a_server_process_starts_reaches_that_process(tmp_path, at):
    script = subprocess.Popen(
        [sys.executable, "-c", SIGNAL_INSIDE_POPEN, str(tmp_path), str(at)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = script.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(script.pid, signal.SIGKILL)
        script.communicate()
        pytest.fail("the parent still waits for a server process it never told to stop")
    started = [int(line.split()[1]) for line in out.splitlines() if line.startswith("started")]
    assert out.splitlines()[-1] == "returned 0", err
    assert len(started) == at  # nothing is started once stopping
    assert not any(process_runs(pid) for pid in started)


def test_orphans_handed_to_the_parent_are_collected_and_its_own_children_are_not(tmp_path):
    log = tmp_path / "server.log"
    with open(log, "w") as output:
        parent = subprocess.Popen(
            [sys.executable, "-c", AS_SUBREAPER, "--port", "0", "--processes", "2"]
            + ["--database-url", sqlite_url(tmp_path), "--runs-dir", str(tmp_path / "runs")],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=output,
        )

    def logged() -> str:
        return log.read_text()

    try:
        wait_for(lambda: logged().count("instance protocol on") == 2, 30)
        pidfile = tmp_path / "orphan.pid"
        started = run_cli(
            "start", "--database-url", sqlite_url(tmp_path), "--max-failures", "1", "--",
            "/bin/sh", "-c", f"sleep 60 & echo $! > {pidfile}",
            cwd=tmp_path,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        orphan = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 30))
        # The shell exits at once; its background sleep is handed to the parent.
        wait_for(lambda: parent_of(orphan) == parent.pid, 10)
        os.kill(orphan, signal.SIGKILL)
        wait_for(lambda: parent_of(orphan) is None, 10)  # collected, not left a zombie

        children = {
            int(number): int(pid)
            for number, pid in re.findall(r"server process (\d+) started \(pid (\d+)\)", logged())
        }
        os.kill(children[1], signal.SIGKILL)
        wait_for(lambda: "was killed by signal 9; starting it again" in logged(), 10)
        wait_for(lambda: logged().count("instance protocol on") == 3, 30)
    finally:
        parent.send_signal(signal.SIGTERM)
        code = parent.wait(30)
    assert code == 0, logged()
    assert not re.search(r"server process \d \(pid \d+\) exited", logged())
