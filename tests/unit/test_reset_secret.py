"""The stateless reset secret in the runs folder: made once, owner-only, shared, checked."""

from __future__ import annotations

import multiprocessing
import os
import stat

import pytest

from runtara.server.reset_secret import FILE_NAME, ResetSecretUnusable, load_or_create


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077, 0o277])
def test_the_first_start_makes_an_owner_only_secret_in_a_new_private_folder(tmp_path, umask):
    runs = tmp_path / "a" / "runs"
    previous = os.umask(umask)
    try:
        secret = load_or_create(runs)
    finally:
        os.umask(previous)
    assert len(secret) == 32
    assert (runs / FILE_NAME).read_bytes() == secret
    assert mode(runs / FILE_NAME) == 0o600
    assert mode(runs) == 0o700
    assert os.listdir(runs) == [FILE_NAME]  # no scratch file left


def test_later_starts_read_the_same_secret(tmp_path):
    first = load_or_create(tmp_path)
    assert load_or_create(tmp_path) == first
    assert load_or_create(tmp_path) == first


def test_an_existing_folder_keeps_its_mode(tmp_path):
    tmp_path.chmod(0o755)
    load_or_create(tmp_path)
    assert mode(tmp_path) == 0o755


def _start(runs, barrier, results) -> None:
    barrier.wait()
    results.put(load_or_create(runs))


def test_processes_starting_together_end_up_with_one_secret(tmp_path):
    context = multiprocessing.get_context("fork")
    count = 8
    barrier, results = context.Barrier(count), context.Queue()
    processes = [
        context.Process(target=_start, args=(tmp_path / "runs", barrier, results))
        for _ in range(count)
    ]
    for process in processes:
        process.start()
    secrets = {results.get(timeout=30) for _ in range(count)}
    for process in processes:
        process.join(30)
    assert len(secrets) == 1
    assert (tmp_path / "runs" / FILE_NAME).read_bytes() in secrets
    assert os.listdir(tmp_path / "runs") == [FILE_NAME]


def unusable(runs) -> str:
    with pytest.raises(ResetSecretUnusable) as caught:
        load_or_create(runs)
    return str(caught.value)


@pytest.mark.parametrize("size", [0, 10, 31, 33, 4096])
def test_a_secret_of_the_wrong_size_is_refused(tmp_path, size):
    path = tmp_path / FILE_NAME
    path.write_bytes(bytes(size))
    path.chmod(0o600)
    message = unusable(tmp_path)
    assert str(path) in message
    assert f"holds {min(size, 33)} bytes, not 32" in message


def test_a_secret_others_can_read_is_refused(tmp_path):
    path = tmp_path / FILE_NAME
    path.write_bytes(bytes(32))
    path.chmod(0o640)
    assert "is open to others (mode 640)" in unusable(tmp_path)
    assert f"chmod 600 {path}" in unusable(tmp_path)


def test_a_symbolic_link_is_not_followed(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_bytes(bytes(32))
    target.chmod(0o600)
    (tmp_path / FILE_NAME).symlink_to(target)
    assert "is a symbolic link" in unusable(tmp_path)


def test_a_dangling_symbolic_link_is_not_written_through(tmp_path):
    (tmp_path / FILE_NAME).symlink_to(tmp_path / "planted")
    assert "is a symbolic link" in unusable(tmp_path)
    assert not (tmp_path / "planted").exists()


def test_a_folder_in_place_of_the_secret_is_refused(tmp_path):
    (tmp_path / FILE_NAME).mkdir()
    assert "is not a regular file" in unusable(tmp_path)


def test_a_fifo_in_place_of_the_secret_is_refused_without_waiting_for_a_writer(tmp_path):
    os.mkfifo(tmp_path / FILE_NAME, 0o600)
    assert "is not a regular file" in unusable(tmp_path)


def test_a_runs_folder_that_is_a_file_is_a_clear_error(tmp_path):
    runs = tmp_path / "runs"
    runs.write_text("not a folder")
    message = unusable(runs)
    assert f"cannot create the stateless reset secret {runs / FILE_NAME}" in message
    assert "Not a directory" in message
