"""Launched instances' log files on real file systems: the cap while a process
appends, the offsets readers use across caps, and the files' privacy."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from runtara.launcher import logs

HEADER = b"--- attempt 1 ---\n"
LINES = 60_000
LIMIT = 16 * 1024
WRITER = f"""
import os, time
for start in range(0, {LINES}, 40):
    os.write(1, b"".join(b"%08d\\n" % n for n in range(start, min(start + 40, {LINES}))))
    time.sleep(0.0002)
"""
"""Appends numbered 9-byte lines to its stdout, 40 at a time (each write is one append),
for about a second."""


def stream() -> bytes:
    """Everything the writer's log receives: the attempt's header, then the lines."""
    return HEADER + b"".join(b"%08d\n" % n for n in range(LINES))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def moved(path: Path) -> int:
    counter = path.with_name(path.name + ".moved")
    return int(counter.read_bytes()) if counter.exists() else 0


@pytest.fixture
def tmpfs_folder():
    """A folder on tmpfs, a file system that cannot collapse a range."""
    if not os.path.isdir("/dev/shm") or "tmpfs" not in _file_system("/dev/shm"):
        pytest.skip("no tmpfs at /dev/shm")
    folder = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="runtara-test-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _file_system(path: str) -> str:
    with open("/proc/mounts") as mounts:
        found = [line.split() for line in mounts if line.split()[1] == path]
    return found[-1][2] if found else ""


def capped_while_writing(
    folder: Path, *, exact: bool
) -> tuple[list[tuple[int, bytes]], Path, list[bytes]]:
    """Run the writer on a fresh log, capping it at LIMIT as fast as possible and
    following it with read_from; the ``.1`` after each cap (with the count of bytes moved
    out then), the log, and the chunks the follower read. Each chunk is checked on
    reading: ``exact``, to be the bytes at its offset; else, to go on from the last one
    (the truncating fallback may lose a write, which shifts the offsets)."""
    descriptors = logs.open_for_attempt(folder / "run", "attempt 1")
    path = folder / "run" / "stdout.log"
    try:
        writer = subprocess.Popen([sys.executable, "-c", WRITER], stdout=descriptors["stdout"])
    finally:
        for fd in descriptors.values():
            os.close(fd)
    rotations, read, offset = [], [], 0
    expected = stream()
    try:
        while True:
            done = writer.poll() is not None  # then one last round reads everything
            if logs.cap(path, LIMIT):
                rotations.append((moved(path), (folder / "run" / "stdout.log.1").read_bytes()))
            while True:
                data, after = logs.read_from(path, offset)
                if not data:
                    break
                assert after > offset
                if exact:
                    assert data == expected[after - len(data) : after]
                read.append(data)
                offset = after
            if done:
                break
    finally:
        writer.kill()
        writer.wait()
    assert writer.returncode == 0
    if not exact:
        assert increasing(b"".join(read))
    return rotations, path, read


def increasing(data: bytes) -> bool:
    """Whether the whole lines in ``data`` have increasing numbers (none repeated)."""
    numbers = [int(line) for line in data.split(b"\n") if line.isdigit() and len(line) == 8]
    return numbers == sorted(set(numbers))


def test_a_cap_moves_the_older_part_and_loses_nothing_the_process_appends_meanwhile(tmp_path):
    rotations, path, read = capped_while_writing(tmp_path, exact=True)
    expected = stream()
    count = len(rotations)
    assert count >= 10
    end = 0  # of the previous .1, in the whole stream
    for total, rotated in rotations:
        assert rotated == expected[total - len(rotated) : total]
        start = total - len(rotated)
        # .1 follows on from the previous one; only bytes a single cap moved out
        # before its newest LIMIT are dropped.
        assert start == end or (start > end and len(rotated) == LIMIT), (start, end)
        end = total
    assert path.read_bytes() == expected[end:]
    assert b"".join(read)[-1000:] == expected[-1000:]
    assert logs.read_from(path, len(expected)) == (b"", len(expected))


def test_the_older_part_is_cut_at_a_block_and_at_most_the_limit_goes_to_dot_1(tmp_path):
    descriptors = logs.open_for_attempt(tmp_path / "run", "attempt 1")
    os.close(descriptors["stderr"])
    content = HEADER + bytes(range(256)) * 1000  # 256 018 bytes
    os.write(descriptors["stdout"], content[len(HEADER) :])
    os.close(descriptors["stdout"])
    path = tmp_path / "run" / "stdout.log"
    block = os.stat(path).st_blksize
    cut = (len(content) - LIMIT // 2) // block * block

    assert logs.cap(path, LIMIT)
    assert path.read_bytes() == content[cut:]
    assert LIMIT // 2 <= path.stat().st_size < LIMIT // 2 + block
    assert (tmp_path / "run" / "stdout.log.1").read_bytes() == content[cut - LIMIT : cut]
    assert moved(path) == cut
    assert not logs.cap(path, LIMIT)  # under the limit now
    assert logs.read_from(path, 0) == (content[cut:], len(content))  # from the oldest kept
    assert logs.read_from(path, cut + 10, 5) == (content[cut + 10 : cut + 15], cut + 15)
    assert logs.read_all(path) == content[cut:]
    assert logs.tail(path, 1) == content[cut:].decode("utf-8", "replace").splitlines()[-1]


def test_without_collapse_everything_moves_and_nothing_is_lost_between_writes(tmpfs_folder):
    descriptors = logs.open_for_attempt(tmpfs_folder / "run", "attempt 1")
    os.close(descriptors["stderr"])
    path = tmpfs_folder / "run" / "stdout.log"
    content = stream()[: 3 * LIMIT]
    os.write(descriptors["stdout"], content[len(HEADER) :])

    assert logs.cap(path, LIMIT)
    assert path.stat().st_size == 0
    assert (tmpfs_folder / "run" / "stdout.log.1").read_bytes() == content[-LIMIT:]
    assert moved(path) == len(content)
    os.write(descriptors["stdout"], b"after\n")  # the writer's offset follows: no hole
    os.close(descriptors["stdout"])
    assert path.read_bytes() == b"after\n"
    assert logs.read_from(path, len(content)) == (b"after\n", len(content) + 6)


def test_without_collapse_a_writer_meanwhile_sees_its_lines_kept_in_order(tmpfs_folder):
    rotations, path, read = capped_while_writing(tmpfs_folder, exact=False)
    assert rotations
    kept = b"".join(rotated for _, rotated in rotations) + path.read_bytes()
    assert increasing(kept) and kept.endswith(b"%08d\n" % (LINES - 1))
    assert max(len(rotated) for _, rotated in rotations) < 2 * LIMIT


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o277], ids=oct)
def test_logs_and_run_folders_are_the_users_alone_whatever_the_umask(tmp_path, umask):
    runs = tmp_path / "runs"
    previous = os.umask(umask)
    try:
        descriptors = logs.open_for_attempt(runs / "run", "attempt 1")
        os.write(descriptors["stdout"], b"x" * 3 * LIMIT)
        for fd in descriptors.values():
            os.close(fd)
        assert logs.cap(runs / "run" / "stdout.log", LIMIT)
    finally:
        os.umask(previous)
    assert mode(runs) == mode(runs / "run") == 0o700
    for name in ("stdout.log", "stderr.log", "stdout.log.1", "stdout.log.moved"):
        assert mode(runs / "run" / name) == 0o600, name


def test_files_an_older_version_left_readable_are_made_private(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir(mode=0o755)
    (folder / "stderr.log").write_bytes(b"old\n")
    (folder / "stderr.log").chmod(0o644)
    for fd in logs.open_for_attempt(folder, "attempt 2").values():
        os.close(fd)
    assert mode(folder) == 0o700 and mode(folder / "stderr.log") == 0o600
    assert (folder / "stderr.log").read_bytes() == b"old\n--- attempt 2 ---\n"


def test_a_symlink_planted_as_a_log_is_never_followed(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_bytes(b"secret\n")
    (folder / "stdout.log").symlink_to(victim)
    with pytest.raises(OSError, match="the log file is a symbolic link"):
        logs.open_for_attempt(folder, "attempt 1")
    path = folder / "stdout.log"
    assert logs.read_from(path, 0) == (b"", 0)
    assert logs.read_all(path) == b"" and logs.tail(path) == ""
    victim.write_bytes(b"y" * 3 * LIMIT)
    assert not logs.cap(path, LIMIT)
    assert victim.read_bytes() == b"y" * 3 * LIMIT and not (folder / "stdout.log.1").exists()


def test_a_symlink_planted_as_the_rotated_log_is_replaced_not_written_through(tmp_path):
    folder = tmp_path / "run"
    descriptors = logs.open_for_attempt(folder, "attempt 1")
    os.write(descriptors["stdout"], b"z" * 3 * LIMIT)
    for fd in descriptors.values():
        os.close(fd)
    victim = tmp_path / "authorized_keys"
    victim.write_bytes(b"key\n")
    for name in ("stdout.log.1", "stdout.log.moved", ".stdout.log.1.new"):
        (folder / name).symlink_to(victim)
    assert logs.cap(folder / "stdout.log", LIMIT)
    assert victim.read_bytes() == b"key\n"
    assert not (folder / "stdout.log.1").is_symlink()
    assert not (folder / "stdout.log.moved").is_symlink()
    assert (folder / "stdout.log.1").read_bytes().startswith(b"z")


def test_a_run_folder_that_is_a_symlink_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "run").symlink_to(elsewhere)
    with pytest.raises(OSError, match="the run folder is a symbolic link"):
        logs.open_for_attempt(tmp_path / "runs" / "run", "attempt 1")
    assert list(elsewhere.iterdir()) == []
    (elsewhere / "stdout.log").write_bytes(b"elsewhere\n")
    assert logs.read_from(tmp_path / "runs" / "run" / "stdout.log", 0) == (b"", 0)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_a_run_folder_another_user_owns_is_refused(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir(mode=0o777)
    os.chown(folder, 65534, 65534)
    with pytest.raises(PermissionError, match="owned by uid 65534"):
        logs.open_for_attempt(folder, "attempt 1")
    assert list(folder.iterdir()) == []


def test_a_log_that_is_not_a_regular_file_is_refused(tmp_path):
    folder = tmp_path / "run"
    (folder / "stderr.log").mkdir(parents=True)
    with pytest.raises(OSError):
        logs.open_for_attempt(folder, "attempt 1")
    assert logs.read_all(folder / "stderr.log") == b""
    assert not logs.cap(folder / "stderr.log", 0)


def test_a_cap_tried_during_a_read_waits_for_the_next_call(tmp_path, monkeypatch):
    descriptors = logs.open_for_attempt(tmp_path / "run", "attempt 1")
    content = HEADER + bytes(range(256)) * (3 * logs.CHUNK // 256)
    os.write(descriptors["stdout"], content[len(HEADER) :])
    for fd in descriptors.values():
        os.close(fd)
    path = tmp_path / "run" / "stdout.log"
    tried = []
    real_pread = os.pread

    def pread(fd, size, offset):  # the read's first chunk, then a cap
        data = real_pread(fd, size, offset)
        if not tried:
            tried.append(logs.cap(path, LIMIT))
        return data

    monkeypatch.setattr(os, "pread", pread)
    assert logs.read_all(path) == content
    assert tried == [False]
    assert logs.read_from(path, 0)[0] == content[: logs.CHUNK]
    monkeypatch.undo()
    assert logs.cap(path, LIMIT) and path.stat().st_size < LIMIT


def test_a_run_folder_made_before_the_logs_is_private_too(tmp_path):
    previous = os.umask(0o022)
    try:
        logs.make_run_folder(tmp_path / "runs" / "run")
    finally:
        os.umask(previous)
    assert mode(tmp_path / "runs") == mode(tmp_path / "runs" / "run") == 0o700
    (tmp_path / "runs" / "link").symlink_to(tmp_path)
    with pytest.raises(OSError, match="the run folder is a symbolic link"):
        logs.make_run_folder(tmp_path / "runs" / "link")
