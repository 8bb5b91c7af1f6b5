"""``logs``: both outputs of a launched instance, labelled, attempt by attempt."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import pytest

from runtara import records
from runtara.config import StorageConfig
from runtara.launcher import both_logs, logs
from runtara.storage import selection
from tests.integration.test_cli_conventions import Child
from tests.support import ServerProcess, run_cli, sqlite_url, start_by_cli, wait_for

TWO_ATTEMPTS = """
import os, sys
attempt = 1 if not os.path.exists("tried") else 2
open("tried", "a").close()
sys.stderr.write(f"err {attempt}\\n")  # written first, shown after stdout's lines
sys.stderr.flush()
print(f"out {attempt}\\nout {attempt} again")
sys.exit(1)
"""


def start_code(url: str, instance_id: str, code: str, work: Path, *flags: str) -> None:
    """Start ``python -c code`` as ``instance_id`` in the folder ``work`` (the command
    runs in the folder above it)."""
    start_by_cli(
        url,
        instance_id,
        *flags,
        "--cwd",
        str(work),
        "--",
        sys.executable,
        "-c",
        code,
        cwd=work.parent,
    )


@pytest.fixture
def failed_twice(tmp_path):
    """A real server that ran an instance twice (both attempts failed): its flags to
    reach it through its store, and through its management service."""
    url = sqlite_url(tmp_path)
    runs = tmp_path / "runs"
    fast = ("--restart-backoff", "50ms", "--restart-backoff-max", "200ms")
    server = ServerProcess("--database-url", url, "--runs-dir", str(runs), *fast, cwd=tmp_path)
    storage = selection.open_driver(StorageConfig(database_url=url), workers=2)
    try:
        (tmp_path / "work").mkdir()
        start_code(url, "twice", TWO_ATTEMPTS, tmp_path / "work", "--max-failures", "2")

        def failed():
            found = storage.run(lambda tx: tx.get_instance("twice"), write=False)
            return found.status is records.InstanceStatus.FAILED

        wait_for(failed, 60)
        yield (
            {
                "direct": ["--database-url", url, "--runs-dir", str(runs)],
                "remote": server.management_target(),
            },
            runs,
        )
    finally:
        storage.close()
        server.signal(signal.SIGTERM)
        assert server.wait() == 0, server.output()


@pytest.mark.parametrize("where", ["direct", "remote"])
def test_logs_shows_both_outputs_labelled_attempt_by_attempt(failed_twice, tmp_path, where):
    targets, _ = failed_twice
    shown = run_cli("logs", "twice", *targets[where], cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    markers = [
        re.fullmatch(r"--- attempt (\d) \((\d) failed in a row before it\), \S+ ---", line)
        for line in lines[::4]
    ]
    assert [(m.group(1), m.group(2)) for m in markers] == [("1", "0"), ("2", "1")]
    assert [line for n, line in enumerate(lines) if n % 4] == [
        "stdout| out 1",
        "stdout| out 1 again",
        "stderr| err 1",
        "stdout| out 2",
        "stdout| out 2 again",
        "stderr| err 2",
    ]


def test_logs_stream_prints_one_output_as_it_is(failed_twice, tmp_path):
    targets, runs = failed_twice
    for stream in logs.STREAMS:
        shown = run_cli("logs", "twice", "--stream", stream, *targets["remote"], cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.encode() == logs.log_path(runs, "twice", stream).read_bytes()


class Written:
    """Both log files of an instance, written as a launcher and its process do."""

    def __init__(self, runs: Path) -> None:
        self.runs = runs
        self.folder = logs.run_folder(runs, "job")

    def attempt(self, number: int) -> dict[str, int]:
        return logs.open_for_attempt(self.folder, f"attempt {number} (0 failed in a row before it)")

    def began(self, number: int) -> None:
        """Attempt ``number`` began: its marker is written, its process's files closed."""
        for fd in self.attempt(number).values():
            os.close(fd)

    def append(self, stream: str, data: bytes) -> None:
        with open(self.folder / f"{stream}.log", "ab") as log:
            log.write(data)

    def reader(self) -> both_logs.BothLogs:
        return both_logs.BothLogs(
            lambda stream, offset: logs.read_from(logs.log_path(self.runs, "job", stream), offset)
        )


def marker(number: int) -> bytes:
    return b"--- attempt %d (0 failed in a row before it) ---\n" % number


def test_following_holds_a_newer_attempt_until_the_other_log_reaches_it(tmp_path):
    written = Written(tmp_path)
    written.began(1)
    written.append("stdout", b"one\n")
    both = written.reader()
    assert list(both.take(final=False)) == [marker(1), b"stdout| one\n"]
    # the next attempt's marker has reached stdout, not yet stderr
    written.append("stdout", marker(2) + b"two\n")
    written.append("stderr", b"late of attempt 1\n")
    assert list(both.take(final=False)) == [b"stderr| late of attempt 1\n"]
    written.append("stderr", marker(2) + b"err two\n")
    assert list(both.take(final=False)) == [marker(2), b"stdout| two\n", b"stderr| err two\n"]


def test_a_line_without_its_newline_waits_while_following_and_not_at_the_end(tmp_path):
    written = Written(tmp_path)
    written.began(1)
    written.append("stdout", b"half a li")
    both = written.reader()
    assert list(both.take(final=False)) == [marker(1)]
    written.append("stdout", b"ne\n")
    assert list(both.take(final=False)) == [b"stdout| half a line\n"]
    written.append("stderr", b"no newline")
    quiet = [list(both.take(final=False)) for _ in range(both_logs.HOLD_READS + 1)]
    assert quiet[:-1] == [[]] * both_logs.HOLD_READS
    assert quiet[-1] == [b"stderr| no newline\n"]
    written.append("stdout", b"last")
    assert list(written.reader().take()) == [
        marker(1),
        b"stdout| half a line\n",
        b"stdout| last\n",
        b"stderr| no newline\n",
    ]


def test_a_log_cut_by_a_cap_puts_its_first_lines_in_the_attempt_before_its_marker(tmp_path):
    written = Written(tmp_path)
    # stdout lost its start (marker 1) to a cap; stderr lost everything before attempt 3
    written.folder.mkdir(parents=True)
    written.append("stdout", b"tail of 1\n" + marker(2) + b"in 2\n")
    written.append("stderr", b"err of 2\n")
    assert list(written.reader().take()) == [
        b"stdout| tail of 1\n",
        marker(2),
        b"stdout| in 2\n",
        b"stderr| err of 2\n",
    ]


WAITS_THEN_FAILS = """
import os, sys, time
attempt = 2 if os.path.exists("tried") else 1
open("tried", "a").close()
print(f"out {attempt}", flush=True)
sys.stderr.write(f"err {attempt}\\n")
sys.stderr.flush()
while attempt == 1 and not os.path.exists("go"):
    time.sleep(0.05)
time.sleep(60 if attempt == 2 else 0)
sys.exit(1)
"""


def test_logs_follow_prints_each_attempt_as_it_comes(tmp_path):
    url = sqlite_url(tmp_path)
    fast = ("--restart-backoff", "50ms", "--restart-backoff-max", "200ms")
    runs = str(tmp_path / "runs")
    server = ServerProcess("--database-url", url, "--runs-dir", runs, *fast, cwd=tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    follower = None
    try:
        start_code(url, "live", WAITS_THEN_FAILS, work)
        follower = Child("logs", "live", "--follow", *server.management_target(), cwd=tmp_path)
        assert follower.next_line().startswith("--- attempt 1 (0 failed in a row before it), ")
        assert [follower.next_line(), follower.next_line()] == ["stdout| out 1", "stderr| err 1"]
        (work / "go").touch()
        assert follower.next_line().startswith("--- attempt 2 (1 failed in a row before it), ")
        assert [follower.next_line(), follower.next_line()] == ["stdout| out 2", "stderr| err 2"]
        assert follower.interrupt() == (130, "")
        follower = None
        stopped = run_cli("stop", "live", "--grace", "1s", "--database-url", url, cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stderr
    finally:
        if follower is not None:
            follower.process.kill()
        server.signal(signal.SIGTERM)
        assert server.wait() == 0, server.output()
