"""What every command does alike: unknown commands, help, completion, Ctrl-C, a
closed pipe, bytes that are not text, --timeout, --follow, JSON output and
durations; each as a user meets it, with the real command."""

from __future__ import annotations

import datetime as dt
import json
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from runtara import cli, config, records
from runtara.cli import common
from runtara.launcher import logs
from runtara.protocol import instance_pb2 as pb
from runtara.storage import selection
from tests.support import LoopbackServer, run_cli, sqlite_url, wait_for

CLIENT_COMMANDS = (
    "signal",
    "custom-signal",
    "instances",
    "show",
    "checkpoints",
    "events",
    "start",
    "stop",
    "logs",
    "health",
)
"""The commands that act on instances, directly or through a server."""


class Served:
    """One server with its management service, over a SQLite file, for the tests
    of this module; ``remote`` and ``direct`` are the two ways to reach it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.url = sqlite_url(folder)
        self.server = LoopbackServer(self.url, management_addr=("127.0.0.1", 0))
        self.client = self.server.client()
        self.remote = self.server.management_target()
        self.direct = ["--database-url", self.url]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    running = Served(tmp_path_factory.mktemp("served"))
    yield running
    running.server.stop()


@pytest.fixture
def silent_port():
    """A UDP port where nothing ever answers (and what reaches it can be seen)."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    yield silent
    silent.close()


class Child:
    """A command running as a child process, its stdout read line by line."""

    def __init__(self, *args: str, cwd: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "runtara", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # As a terminal's shell starts it: a test run started in the background
            # of a script ignores SIGINT, and its children would inherit that.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def next_line(self, timeout: float = 15) -> str:
        return self.lines.get(timeout=timeout)

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C: the exit code and what it wrote to stderr."""
        self.process.send_signal(signal.SIGINT)
        _, stderr = self.process.communicate(timeout=15)
        return self.process.returncode, stderr


def test_an_unknown_command_is_named_with_the_closest_one(tmp_path):
    typo = run_cli("sever", cwd=tmp_path)
    assert (typo.returncode, typo.stdout) == (2, "")
    assert typo.stderr == "runtara-core: error: unknown command 'sever'; did you mean 'serve'?\n"
    unknown = run_cli("frobnicate", "--json", cwd=tmp_path)
    assert unknown.returncode == 2
    assert unknown.stderr == (
        "runtara-core: error: unknown command 'frobnicate'; `runtara-core --help` lists them\n"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("typed", "hint"),
    [
        ("strat", "did you mean 'start'?"),  # two letters swapped, before the most alike
        ("sta", "did you mean 'start' or 'stats'?"),  # the beginning of both
        ("stpo", "did you mean 'stop'?"),
        ("instnces", "did you mean 'instances'?"),  # a letter missing
        ("logss", "did you mean 'logs'?"),  # a letter extra
    ],
)
def test_did_you_mean_prefers_what_the_typo_begins_or_slips_from(typed, hint):
    assert common.did_you_mean(typed, list(cli.COMMANDS)) == hint


def test_a_mistyped_subcommand_or_choice_is_named_with_the_closest_one(tmp_path):
    queue = run_cli("queue", "lst", cwd=tmp_path)
    assert queue.returncode == 2
    assert queue.stderr.endswith(
        "(choose from 'set', 'list', 'pause', 'resume'); did you mean 'list'?\n"
    )
    schedule = run_cli("schedule", "ad", "nightly", cwd=tmp_path)
    assert schedule.returncode == 2
    assert schedule.stderr.endswith("; did you mean 'add'?\n")
    stream = run_cli("logs", "job", "--stream", "stdot", cwd=tmp_path)
    assert stream.returncode == 2
    assert stream.stderr.endswith("; did you mean 'stdout'?\n")
    flag = run_cli("logs", "job", "--folow", cwd=tmp_path)
    assert (flag.returncode, flag.stderr) == (
        2,
        "runtara-core logs: error: unrecognized arguments: --folow; did you mean '--follow'?\n",
    )
    sub_flag = run_cli("queue", "set", "q", "--concurency", "3", cwd=tmp_path)
    assert sub_flag.returncode == 2
    assert sub_flag.stderr.endswith(": --concurency 3; did you mean '--concurrency'?\n")
    far = run_cli("queue", "frobnicate", cwd=tmp_path)
    assert far.returncode == 2
    assert far.stderr.endswith("(choose from 'set', 'list', 'pause', 'resume')\n")


@pytest.mark.parametrize(
    ("args", "fixed"),
    [
        (("start", "python", "x.py", "--flag"), "start -- python x.py --flag"),
        # a flag of start's own name would have been taken for start's
        (
            ("start", "--id", "a", "python", "x.py", "--id", "b"),
            "start --id a -- python x.py --id b",
        ),
        (
            ("start", "--at=now+1m", "python", "-c", "print(1)"),
            "start --at=now+1m -- python -c 'print(1)'",
        ),
        (
            ("schedule", "add", "--every", "1h", "nightly", "python", "report.py", "--full"),
            "schedule add --every 1h nightly -- python report.py --full",
        ),
    ],
)
def test_a_command_with_flags_and_no_dashes_is_refused_with_what_to_write(tmp_path, args, fixed):
    result = run_cli(*args, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    command = " ".join(args[: 2 if args[0] == "schedule" else 1])
    assert result.stderr == (
        f"runtara-core {command}: error: put `--` before the command, so that its flags are its "
        f"own: runtara-core {fixed}\n"
    )


def test_a_command_without_flags_or_with_dashes_needs_no_more(served, tmp_path):
    bare = run_cli("start", "--id", "bare", *served.direct, "true", cwd=tmp_path)
    assert (bare.returncode, bare.stdout) == (0, "bare\n"), bare.stderr
    dashed = run_cli(
        "start", "--id", "dashed", *served.direct, "--", "python", "-c", "pass", "-5", cwd=tmp_path
    )
    assert (dashed.returncode, dashed.stdout) == (0, "dashed\n"), dashed.stderr


def test_help_lists_every_command_in_one_line_and_the_servers_flags(tmp_path):
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name, summary in cli.summaries().items():
        assert re.search(rf"^  {re.escape(name)} +{re.escape(summary)}$", result.stdout, re.M), name
    assert "--log-format FORMAT" in result.stdout and "--port PORT" in result.stdout


def test_bash_completion_completes_commands_flags_and_their_values(tmp_path):
    result = run_cli("completion", "bash", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    script = tmp_path / "runtara-core.bash"
    script.write_text(result.stdout)
    cases = {
        "runtara-core se": "serve",
        "runtara-core --log-f": "--log-format",
        "runtara-core events job --fol": "--follow",
        "runtara-core instances --status ru": "running",
        "runtara-core signal job pa": "pause",
        "runtara-core prune --js": "--json",
        "runtara-core show job --insec": "--insecure-skip-verify",
        "runtara-core help chec": "checkpoints",
    }
    driver = tmp_path / "complete.sh"
    driver.write_text(
        'source "$1"\n'
        "complete -p runtara-core\n"
        + "".join(
            f"COMP_WORDS=({words}); COMP_CWORD={len(words.split()) - 1}; COMPREPLY=(); "
            '_runtara_core; echo "${COMPREPLY[*]}"\n'
            for words in cases
        )
    )
    completed = subprocess.run(
        ["bash", str(driver), str(script)], capture_output=True, text=True, timeout=30
    )
    assert completed.returncode == 0, completed.stderr
    registration, *answers = completed.stdout.splitlines()
    assert registration == "complete -o default -F _runtara_core runtara-core"
    assert dict(zip(cases, answers, strict=True)) == cases


def test_ctrl_c_while_connecting_exits_130_quietly(tmp_path, silent_port):
    host, port = silent_port.getsockname()
    child = Child("instances", "--server", f"{host}:{port}", "--timeout", "1m", cwd=tmp_path)
    silent_port.settimeout(15)
    silent_port.recvfrom(2048)  # its handshake began: it waits for an answer now
    assert child.interrupt() == (130, "")


def test_ctrl_c_while_following_a_log_exits_130_quietly(served, tmp_path):
    served.client.register("logged")
    runs = tmp_path / "runs"
    log = logs.log_path(runs, "logged", "stderr")
    log.parent.mkdir(parents=True)
    log.write_text("first line\n")
    child = Child(
        "logs", "logged", "--follow", "--runs-dir", str(runs), *served.direct, cwd=tmp_path
    )
    assert child.next_line() == "stderr| first line"
    assert child.interrupt() == (130, "")


def test_ctrl_c_while_stop_waits_exits_130_quietly(served, tmp_path):
    served.client.register("stopping")
    child = Child("stop", "stopping", "--grace", "1m", *served.remote, cwd=tmp_path)
    wait_for(lambda: served.server.read(lambda tx: tx.get_pending_signal("stopping")), timeout=15)
    assert child.interrupt() == (130, "")


def test_a_closed_pipe_ends_the_command_quietly(served, tmp_path):
    served.client.register("big")
    served.client.checkpoint("big", "state", bytes(1024 * 1024))  # 1.4 MB of JSON
    writer = subprocess.Popen(
        [sys.executable, "-m", "runtara", "checkpoints", "big", "--get", "state", "--json"]
        + served.direct,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    head = subprocess.run(["head", "-1"], stdin=writer.stdout, capture_output=True, timeout=30)
    writer.stdout.close()
    _, stderr = writer.communicate(timeout=30)
    assert head.stdout == b"{\n"
    assert (writer.returncode, stderr) == (141, b"")


def test_a_payload_of_any_bytes_is_sent_as_given_and_a_name_must_be_text(served, tmp_path):
    not_utf8 = "caf\udce9"  # how Python hands over the argument caf\xe9
    served.client.register("bytes")
    sent = run_cli(
        "custom-signal", "bytes", "cp", "--payload", not_utf8, *served.direct, cwd=tmp_path
    )
    assert (sent.returncode, sent.stdout) == (0, "custom signal for cp sent to bytes\n")
    taken = served.client.checkpoint("bytes", "cp", b"").checkpoint.custom_signal
    assert taken.payload == b"caf\xe9"
    name = run_cli("show", not_utf8, *served.direct, cwd=tmp_path)
    assert (name.returncode, name.stdout) == (2, "")
    assert name.stderr == (
        "runtara-core: error: 'caf\\xe9' is not UTF-8 text, which ids, names and filters "
        "must be (only --payload takes any bytes)\n"
    )
    start = run_cli("start", "--input", not_utf8, *served.direct, "--", "true", cwd=tmp_path)
    assert start.returncode == 2
    assert start.stderr == (
        "runtara-core: error: --input is not UTF-8 text, which JSON is; use @FILE for other bytes\n"
    )


def test_every_client_command_takes_the_server_options():
    for name in CLIENT_COMMANDS:
        parser = common.parser_of(cli.COMMANDS[name].run)
        flags = {option for action in parser.arguments for option in action.option_strings}
        assert {
            "--server",
            "--timeout",
            "--fingerprint",
            "--ca-file",
            "--insecure-skip-verify",
        } <= flags, name


@pytest.mark.parametrize(
    "args",
    [("start", "--", "true"), ("stop", "job"), ("logs", "job")],
    ids=["start", "stop", "logs"],
)
def test_the_newer_commands_give_up_on_a_silent_server_after_timeout(tmp_path, silent_port, args):
    address = "{}:{}".format(*silent_port.getsockname())
    command, *rest = args
    result = run_cli(command, "--server", address, "--timeout", "300ms", *rest, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"runtara-core: error: no management service answers at {address} "
        f"(no QUIC handshake with {address} within 0.3s)\n"
    )


def test_durations_take_the_same_forms_in_every_command():
    seen = set()
    settings = {s.flag: s for s in config.SERVER_SETTINGS + config.TOOL_SETTINGS}
    for name, command in cli.COMMANDS.items():
        for action in common.parser_of(command.run).arguments:
            if action.metavar != "DURATION":
                continue
            flag = action.option_strings[0]
            parse = action.type or settings[flag].parse
            assert parse("1500ms") == parse("1.5s") == parse("0.025m") == 1.5, (name, flag)
            seen.add((name, flag))
    assert {("stop", "--grace"), ("prune", "--finished-before"), ("logs", "--timeout")} <= seen


def test_events_follow_prints_each_new_event_until_ctrl_c(served, tmp_path):
    served.client.register("followed")
    custom = {"instance_id": "followed", "event_type": pb.EVENT_CUSTOM, "subtype": "step"}
    served.client.call(instance_event=pb.InstanceEvent(**custom, payload=b"first"))
    child = Child("events", "followed", "--follow", *served.remote, cwd=tmp_path)
    assert child.next_line().split() == ["ID", "TIME", "TYPE", "SUBTYPE", "CHECKPOINT", "PAYLOAD"]
    assert child.next_line().split()[3:] == ["started", "-", "-", "-"]
    assert child.next_line().split()[3:] == ["custom", "step", "-", "first"]
    served.client.call(instance_event=pb.InstanceEvent(**custom, payload=b"second"))
    assert child.next_line().split()[3:] == ["custom", "step", "-", "second"]
    assert child.interrupt() == (130, "")


def test_events_follow_with_json_prints_one_object_a_line(served, tmp_path):
    served.client.register("streamed")
    custom = {"instance_id": "streamed", "event_type": pb.EVENT_CUSTOM, "subtype": "step"}
    served.client.call(instance_event=pb.InstanceEvent(**custom, payload=b"first"))
    child = Child(
        "events", "streamed", "--follow", "--json", "--type", "custom", *served.direct, cwd=tmp_path
    )
    first = json.loads(child.next_line())
    assert (first["event_type"], first["payload"]) == ("custom", "Zmlyc3Q=")
    served.client.event("streamed", pb.EVENT_HEARTBEAT)
    served.client.call(instance_event=pb.InstanceEvent(**custom, payload=b"second"))
    second = json.loads(child.next_line())
    assert (second["payload"], second["id"] > first["id"]) == ("c2Vjb25k", True)
    assert child.interrupt() == (130, "")
    assert child.lines.empty()  # the heartbeat did not pass the filter


def test_follow_takes_no_offset(served, tmp_path):
    result = run_cli("events", "x", "--follow", "--offset", "5", *served.direct, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.endswith(
        "error: --follow starts from the newest events: it takes no --offset\n"
    )


def test_drivers_and_prune_print_json(tmp_path):
    drivers = run_cli("drivers", "--json", cwd=tmp_path)
    assert drivers.returncode == 0, drivers.stderr
    by_name = {driver["name"]: driver for driver in json.loads(drivers.stdout)}
    assert by_name["sqlite"]["module"] == "runtara.drivers.sqlite:SqliteDriver"
    assert by_name["postgres"]["url_schemes"] == ["postgres", "postgresql"]
    assert by_name["sqlite"]["error"] is None

    url = sqlite_url(tmp_path)
    storage = selection.open_driver(config.StorageConfig(database_url=url), workers=1)
    storage.migrate()
    long_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3)

    def finished(tx):
        tx.create_instance("old", "acme", long_ago)
        tx.update_instance(
            "old",
            records.InstanceUpdate(status=records.InstanceStatus.COMPLETED, finished_at=long_ago),
        )

    storage.run(finished)
    storage.close()
    target = ("--finished-before", "2d", "--database-url", url)
    dry = run_cli("prune", *target, "--dry-run", "--json", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    planned = json.loads(dry.stdout)
    assert (planned["dry_run"], planned["deleted"]) == (True, ["old"])
    cutoff = dt.datetime.fromisoformat(planned["finished_before"])
    assert (
        abs(dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2) - cutoff).total_seconds() < 60
    )
    done = run_cli("prune", *target, "--json", cwd=tmp_path)
    assert json.loads(done.stdout)["deleted"] == ["old"]
