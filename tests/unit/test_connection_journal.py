"""The journal of a server process's live connections: written, snapshotted, read back."""

from __future__ import annotations

import logging
import os
import stat

import pytest

from runtara.server import connection_journal
from runtara.server.connection_journal import ConnectionJournal, Entry

PORT = 8001
LOGGER = "runtara.server.connection_journal"


def journal(folder, process: int = 0) -> ConnectionJournal:
    return ConnectionJournal(folder, port=PORT, process=process, connection_id_length=8)


def entry(number: int, process: int = 0, host: str = "127.0.0.1") -> Entry:
    return Entry("instance", bytes([process]) + number.to_bytes(7, "big"), (host, 40000 + number))


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def planted(folder, data: bytes, file_mode: int = 0o600):
    path = connection_journal.path_for(folder, port=PORT, process=0)
    path.write_bytes(data)
    path.chmod(file_mode)
    return path


def test_a_first_start_finds_nothing_and_starts_an_empty_owner_only_journal(tmp_path):
    previous = os.umask(0o277)
    try:
        first = journal(tmp_path)
        assert first.take_over() == []
    finally:
        os.umask(previous)
    assert first.path == tmp_path / f"connections-{PORT}-0.journal"
    assert first.path.read_bytes() == b""
    assert mode(first.path) == 0o600
    assert os.listdir(tmp_path) == [first.path.name]  # no scratch file left


def test_the_successor_reads_the_connections_its_predecessor_opened(tmp_path):
    first = journal(tmp_path, process=2)
    first.take_over()
    opened = [entry(1, 2), entry(2, 2, "::1"), entry(3, 2, "10.1.2.3")]
    for each in opened:
        first.opened(each)
    assert first.path.read_bytes().count(b"\n") == 3  # each written as it opened
    assert journal(tmp_path, process=2).take_over() == opened


def test_a_successor_starts_a_fresh_journal_after_reading(tmp_path):
    first = journal(tmp_path)
    first.take_over()
    first.opened(entry(1))
    second = journal(tmp_path)
    assert second.take_over() == [entry(1)]
    second.opened(entry(2))
    assert journal(tmp_path).take_over() == [entry(2)]


def test_a_snapshot_keeps_only_the_live_connections(tmp_path):
    live = journal(tmp_path)
    live.take_over()
    for number in range(1, 6):
        live.opened(entry(number))
    live.closed(entry(2).connection_id)
    live.closed(entry(4).connection_id)
    live.rewrite()
    assert mode(live.path) == 0o600
    live.opened(entry(6))  # appended to the snapshot
    assert journal(tmp_path).take_over() == [entry(1), entry(3), entry(5), entry(6)]


def test_a_snapshot_is_taken_only_when_connections_closed(tmp_path):
    live = journal(tmp_path)
    live.take_over()
    live.opened(entry(1))
    before = os.stat(live.path).st_ino
    live.rewrite()
    assert os.stat(live.path).st_ino == before
    live.closed(entry(9).connection_id)  # never journaled: nothing to drop
    live.rewrite()
    assert os.stat(live.path).st_ino == before


def test_a_clean_stop_removes_the_journal(tmp_path):
    live = journal(tmp_path)
    live.take_over()
    live.opened(entry(1))
    live.remove()
    assert not live.path.exists()
    live.opened(entry(2))  # a late handshake writes nothing
    assert not live.path.exists()
    assert journal(tmp_path).take_over() == []


def test_the_same_connection_twice_is_one_entry(tmp_path):
    planted(tmp_path, entry(1).line() * 2 + entry(2).line())
    assert journal(tmp_path).take_over() == [entry(1), entry(2)]


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b"garbage\n", id="one field"),
        pytest.param(b"instance 0000000000000001 127.0.0.1\n", id="three fields"),
        pytest.param(b"instance 0000000000000001 127.0.0.1 40001 x\n", id="five fields"),
        pytest.param(b"Instance 0000000000000001 127.0.0.1 40001\n", id="service not lowercase"),
        pytest.param(b"instance 00000000000001 127.0.0.1 40001\n", id="short id"),
        pytest.param(b"instance 000000000000000001 127.0.0.1 40001\n", id="long id"),
        pytest.param(b"instance 0000000000000g01 127.0.0.1 40001\n", id="not hex"),
        pytest.param(b"instance 0100000000000001 127.0.0.1 40001\n", id="another process's id"),
        pytest.param(b"instance 0000000000000001 127.0.0.256 40001\n", id="not an address"),
        pytest.param(b"instance 0000000000000001 localhost 40001\n", id="a name"),
        pytest.param(b"instance 0000000000000001 127.0.0.1 0\n", id="port 0"),
        pytest.param(b"instance 0000000000000001 127.0.0.1 65536\n", id="port too high"),
        pytest.param(b"instance 0000000000000001 127.0.0.1 -1\n", id="negative port"),
        pytest.param(b"instance 0000000000000001 127.0.0.1 4e4\n", id="port not a number"),
        pytest.param("instance 0000000000000001 127.0.0.1 4٣\n".encode(), id="not ascii"),
        pytest.param(b"instance 00000000000000\x00 127.0.0.1 40001\n", id="a nul byte"),
    ],
)
def test_an_unreadable_line_is_skipped_with_one_warning(tmp_path, caplog, line):
    planted(tmp_path, entry(1).line() + line + b"\n" + line + b"\n" + entry(2).line())
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert journal(tmp_path).take_over() == [entry(1), entry(2)]
    (warning,) = caplog.records
    assert "skipped 2 unreadable line(s)" in warning.getMessage()
    assert "the first: line 2" in warning.getMessage()


def test_a_last_line_without_its_end_is_skipped(tmp_path, caplog):
    planted(tmp_path, entry(1).line() + entry(2).line()[:-3])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert journal(tmp_path).take_over() == [entry(1)]
    assert "skipped 1 unreadable line(s)" in caplog.text and "line 2" in caplog.text


def test_blank_lines_are_not_unreadable(tmp_path, caplog):
    planted(tmp_path, b"\n" + entry(1).line() + b"  \n\n")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert journal(tmp_path).take_over() == [entry(1)]
    assert caplog.records == []


def test_a_journal_open_to_others_is_not_read(tmp_path, caplog):
    planted(tmp_path, entry(1).line(), file_mode=0o620)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert journal(tmp_path).take_over() == []
    assert "is open to others (mode 620)" in caplog.text
    assert mode(journal(tmp_path).path) == 0o600  # the fresh one


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file away needs root")
def test_a_journal_of_another_user_is_not_read(tmp_path, caplog):
    path = planted(tmp_path, entry(1).line())
    os.chown(path, 12345, 12345)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert journal(tmp_path).take_over() == []
    assert "belongs to another user" in caplog.text


def test_a_journal_behind_a_symbolic_link_is_not_read_and_the_link_is_replaced(tmp_path, caplog):
    target = tmp_path / "target"
    target.write_bytes(entry(1).line())
    target.chmod(0o600)
    runs = tmp_path / "runs"
    runs.mkdir()
    path = connection_journal.path_for(runs, port=PORT, process=0)
    path.symlink_to(target)
    live = journal(runs)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert live.take_over() == []
    assert "is a symbolic link" in caplog.text
    live.opened(entry(2))
    assert not path.is_symlink() and path.read_bytes() == entry(2).line()
    assert target.read_bytes() == entry(1).line()


def test_a_fifo_in_place_of_the_journal_is_not_waited_on(tmp_path, caplog):
    path = connection_journal.path_for(tmp_path, port=PORT, process=0)
    os.mkfifo(path, 0o600)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert journal(tmp_path).take_over() == []
    assert "is not a regular file" in caplog.text


def test_a_journal_that_cannot_be_written_warns_once_and_serving_goes_on(tmp_path, caplog):
    path = connection_journal.path_for(tmp_path, port=PORT, process=0)
    path.mkdir()
    (path / "keep").touch()  # a folder that rename cannot replace
    live = journal(tmp_path)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert live.take_over() == []
        live.opened(entry(1))
        live.rewrite()
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert "is not a regular file" in warnings[0]
    assert "cannot write the connection journal" in warnings[1]
    assert [name for name in os.listdir(tmp_path) if name.startswith(".")] == []
    (path / "keep").unlink()
    path.rmdir()
    live.rewrite()  # the next snapshot writes the live connections
    assert journal(tmp_path).take_over() == [entry(1)]


def test_a_journal_longer_than_the_limit_is_read_up_to_it(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(connection_journal, "LONGEST_JOURNAL", 3 * len(entry(1).line()) + 5)
    planted(tmp_path, b"".join(entry(number).line() for number in range(1, 6)))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert journal(tmp_path).take_over() == [entry(1), entry(2), entry(3)]
    assert "the rest is not read" in caplog.text
