"""One server per address, private files, and warnings where the server cannot
protect itself."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile
import time
from pathlib import Path

import pytest

from runtara import records
from tests.other_user import require_root, run_cli_as_nobody
from tests.support import ServerProcess, free_udp_port, run_cli, sqlite_url, wait_for

WORKFLOWS = Path(__file__).parent.parent / "workflows"


def test_a_second_server_on_the_same_port_refuses_to_start_naming_the_first(tmp_path):
    first_folder, second_folder = tmp_path / "first", tmp_path / "second"
    first_folder.mkdir()
    second_folder.mkdir()
    port = free_udp_port()
    first = ServerProcess("--port", str(port), cwd=first_folder)
    try:
        second = run_cli("--port", str(port), cwd=second_folder)
        assert second.returncode == 1
        (said,) = [line for line in second.stderr.splitlines() if "ERROR" in line]
        assert f"cannot listen on 127.0.0.1:{port} (UDP, --host/--port)" in said
        assert f"runtara-core pid {first.process.pid}" in said
        assert str(first_folder / "runtara.db") in said
        assert list(second_folder.iterdir()) == []  # refused before anything was made
        several = run_cli("--port", str(port), "--processes", "2", cwd=second_folder)
        assert several.returncode == 1 and f"pid {first.process.pid}" in several.stderr
    finally:
        first.signal()
        assert first.wait() == 0
    again = ServerProcess("--port", str(port), cwd=second_folder)  # free once it stopped
    again.signal()
    assert again.wait() == 0


@pytest.mark.parametrize("processes", ["1", "2"])
def test_the_management_and_http_ports_are_held_too(tmp_path, processes):
    management, http = free_udp_port(), free_udp_port()
    first = ServerProcess(
        "--processes",
        processes,
        "--management-addr",
        f"127.0.0.1:{management}",
        "--http-addr",
        f"127.0.0.1:{http}",
        cwd=tmp_path,
    )
    try:
        first.runtime()
        taken = run_cli("--management-addr", f"127.0.0.1:{management}", cwd=tmp_path)
        assert taken.returncode == 1 and "(UDP, --management-addr)" in taken.stderr
        taken = run_cli("--http-addr", f"127.0.0.1:{http}", cwd=tmp_path)
        assert taken.returncode == 1 and "(TCP, --http-addr)" in taken.stderr
        assert f"runtara-core pid {first.process.pid}" in taken.stderr
    finally:
        first.signal()
        assert first.wait() == 0


def private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


def test_nothing_the_server_writes_is_readable_by_other_users(tmp_path):
    before = os.umask(0o022)  # the usual one, which leaves files readable by others
    try:
        effects = tmp_path / "effects.txt"
        server = ServerProcess("--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)
        try:
            started = run_cli(
                "start",
                "--id",
                "private",
                "--input",
                '{"secret": 1}',
                "--env",
                f"EFFECTS={effects}",
                "--env",
                "STEPS=2",
                "--",
                sys.executable,
                str(WORKFLOWS / "steps.py"),
                cwd=tmp_path,
            )
            assert started.returncode == 0, started.stderr
            shown = wait_for(
                lambda: (
                    (out := run_cli("show", "private", "--json", cwd=tmp_path).stdout)
                    and json.loads(out)["instance"]["status"] == records.InstanceStatus.COMPLETED
                    and out
                ),
                60,
            )
            assert shown
            written = [
                tmp_path / "runtara.db",
                tmp_path / "runtara.db-wal",
                tmp_path / "runs",
                *[path for path in (tmp_path / "runs").rglob("*")],
                *[path for path in Path(os.environ["RUNTARA_RUNTIME_DIR"]).rglob("*")],
                Path(os.environ["RUNTARA_RUNTIME_DIR"]),
            ]
            assert any(path.name == "input.json" for path in written)
            assert any(path.name == "stdout.log" for path in written)
            assert any(path.name.startswith("server-") for path in written)
            loose = [str(path) for path in written if path.exists() and not private(path)]
            assert loose == []
            # the workflow's own files follow the umask it was started with
            assert stat.S_IMODE(effects.stat().st_mode) == 0o644
        finally:
            server.signal()
            server.wait()
    finally:
        os.umask(before)


def test_serving_the_instance_protocol_beyond_loopback_is_warned_about(tmp_path):
    server = ServerProcess("--host", "0.0.0.0", cwd=tmp_path)
    try:
        wait_for(lambda: any("has no authentication" in line for line in server.log), 10)
    finally:
        server.signal()
        server.wait()


def test_another_local_user_cannot_make_the_server_run_a_command():
    """Every way the tools offer to start an instance, tried by ``nobody`` against a
    root server whose folder others may enter (as a project folder usually is)."""
    require_root("acting as another user")
    folder = Path(tempfile.mkdtemp(prefix="runtara-shared-"))
    folder.chmod(0o755)
    environment = {"RUNTARA_RUNTIME_DIR": str(folder / "runtime")}
    before = os.umask(0o022)
    server = ServerProcess(cwd=folder, env=environment)
    try:
        running = server.runtime(environment)
        (runtime_file,) = (folder / "runtime").glob("server-*.json")
        owned = folder / "owned"
        attempts = {
            "the server it runs": ([], "no runtara-core server of this user runs"),
            "its runtime file": (["--token-file", str(runtime_file)], "Permission denied"),
            "its management port": (
                ["--server", running.management_addr],
                "missing or wrong management credential",
            ),
            "its instance port": (["--server", running.instance_addr], "did not understand"),
            "its database": (["--database-url", sqlite_url(folder)], "another user's"),
        }
        for way, (flags, refusal) in attempts.items():
            command = ["start", *flags, "--id", "evil", "--", "/usr/bin/touch", str(owned)]
            code, said = run_cli_as_nobody(*command, cwd=folder, env=environment)
            assert code in (1, 2) and refusal in said, (way, code, said)
        time.sleep(2)  # past a launcher tick, had anything been started
        assert not owned.exists()
        listed = run_cli("instances", cwd=folder, env=environment)
        assert listed.returncode == 0 and "evil" not in listed.stdout, listed.stderr
    finally:
        os.umask(before)
        server.signal()
        server.wait()
        shutil.rmtree(folder)
