"""The SQLite backup command the upgrades page gives copies a running server's
database whole: a server started on the copy has every instance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.docs import pages
from tests.support import ServerProcess, run_cli, wait_for


def backup_command() -> str:
    section = pages.section(pages.read("operating/upgrades-and-backups.md"), "## Backing up")
    (command,) = [block for block in pages.indented_blocks(section) if "backup" in block]
    return command


def test_the_sqlite_backup_command_copies_a_running_server_database(tmp_path):
    server = ServerProcess("--database-url", "runtara.db", "--no-launcher", cwd=tmp_path)
    try:
        wait_for(lambda: server.address is not None, 30)
        for number in range(5):
            started = run_cli("start", "--id", f"job-{number}", "--", "true", cwd=tmp_path)
            assert started.returncode == 0, started.stderr
        # the command as the page gives it, its `python` the one running the tests
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
        backup = subprocess.run(
            ["bash", "-c", backup_command()], cwd=tmp_path, env={**os.environ, "PATH": path}
        )
        assert backup.returncode == 0
    finally:
        server.signal()
        assert server.wait() == 0, server.output()
    listed = run_cli(
        "instances", "--json", "--limit", "100", "--database-url", "runtara-backup.db", cwd=tmp_path
    )
    assert listed.returncode == 0, listed.stderr
    ids = {item["instance_id"] for item in json.loads(listed.stdout)["items"]}
    assert ids == {f"job-{number}" for number in range(5)}
