"""Settings as the commands read them: every bad value is one line and exit code 2,
and every time setting takes the same duration forms."""

from __future__ import annotations

import datetime as dt
import shlex
import socket
import time

import pytest

from runtara import cli, clock, config
from runtara.records import InstanceStatus, InstanceUpdate
from runtara.storage import selection
from tests.support import ServerProcess, run_cli, sqlite_url, wait_for

PROGRAMS = {
    "serve": ([], config.SERVER_SETTINGS),
    "instances": (["instances"], config.TOOL_SETTINGS),
    "bench": (["bench"], config.BENCH_SETTINGS),
}
CASES = [(program, setting) for program, (_, settings) in PROGRAMS.items() for setting in settings]


def bad_value(setting: config.Setting, *, as_variable: bool) -> str | None:
    """A value the setting refuses (a blank variable counts as unset, so only a flag
    can carry a blank), or None when there is none."""
    for raw in ("nonsense", "-1") if as_variable else ("nonsense", "-1", " "):
        try:
            setting.parse(raw)
        except ValueError:
            return raw
    return None


def one_line_exit_2(code: int, stderr: str, setting: config.Setting) -> None:
    assert code == 2, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"runtara-core: error: {setting.flag} / {setting.env}: "), stderr


VALUED = [(p, s) for p, s in CASES if s.given is None]
"""The flags that take a value (a switch such as --no-launcher carries none)."""


@pytest.mark.parametrize(("program", "setting"), VALUED, ids=[f"{p}{s.flag}" for p, s in VALUED])
def test_a_bad_flag_value_is_one_line_and_exit_code_2(program, setting, monkeypatch, capsys):
    argv, settings = PROGRAMS[program]
    for each in settings:
        monkeypatch.delenv(each.env, raising=False)
    code = cli.main([*argv, setting.flag, bad_value(setting, as_variable=False)])
    captured = capsys.readouterr()
    one_line_exit_2(code, captured.err, setting)
    assert captured.out == ""


@pytest.mark.parametrize(
    ("program", "setting"),
    [(p, s) for p, s in CASES if bad_value(s, as_variable=True) is not None],
    ids=[f"{p}-{s.env}" for p, s in CASES if bad_value(s, as_variable=True) is not None],
)
def test_a_bad_variable_value_is_one_line_and_exit_code_2(program, setting, monkeypatch, capsys):
    argv, settings = PROGRAMS[program]
    for each in settings:
        monkeypatch.delenv(each.env, raising=False)
    monkeypatch.setenv(setting.env, bad_value(setting, as_variable=True))
    code = cli.main(argv)
    captured = capsys.readouterr()
    one_line_exit_2(code, captured.err, setting)
    assert captured.out == ""


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (
            ["--shutdown-grace", "a while"],
            {},
            "--shutdown-grace / RUNTARA_SHUTDOWN_GRACE_SECONDS: 'a while' is not a duration "
            "such as 90, 90s, 500ms, 15m, 12h or 30d",
        ),
        (
            [],
            {"RUNTARA_QUIC_KEEP_ALIVE_MS": "often"},
            "--quic-keep-alive-ms / RUNTARA_QUIC_KEEP_ALIVE_MS: 'often' is not a whole number "
            "of milliseconds nor a duration such as 1500ms, 1.5s or 2m",
        ),
        (
            ["instances", "--timeout", "0"],
            {},
            "--timeout / RUNTARA_MANAGEMENT_TIMEOUT_SECONDS: '0' must be a positive duration",
        ),
        (
            ["show", "x"],
            {"RUNTARA_MANAGEMENT_ADDR": "somewhere"},
            "--server / RUNTARA_MANAGEMENT_ADDR: 'somewhere' is not HOST:PORT",
        ),
        (
            ["bench"],
            {"RUNTARA_MAX_CONCURRENT_INSTANCES": "0"},
            "--max-concurrent / RUNTARA_MAX_CONCURRENT_INSTANCES: 0 is out of range "
            "(from 1 to 1024)",
        ),
        (
            ["bench", "--duration", "soon"],
            {},
            "argument --duration: 'soon' is not a duration such as 90, 90s, 500ms, 15m, 12h or 30d",
        ),
        (
            ["prune", "--finished-before=-3d"],
            {},
            "argument --finished-before: '-3d' must be a positive duration",
        ),
    ],
)
def test_the_real_command_prints_one_line_without_a_traceback(tmp_path, args, env, expected):
    result = run_cli(*args, cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("runtara-core") and line.endswith(expected), line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("grace", ["10s", "10", "0.5m", "2500ms"])
def test_the_shutdown_grace_takes_every_duration_form(tmp_path, grace):
    server = ServerProcess("--shutdown-grace", grace, cwd=tmp_path)
    server.signal()
    assert server.wait() == 0, server.output()
    seconds = config.duration(grace)
    assert f"finishing in-flight requests (up to {seconds:.0f}s)" in server.output()


def test_the_tools_timeout_bounds_a_server_that_never_answers(tmp_path):
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        result = run_cli(
            "instances",
            cwd=tmp_path,
            env={"RUNTARA_MANAGEMENT_ADDR": address, "RUNTARA_MANAGEMENT_TIMEOUT_SECONDS": "300ms"},
        )
        assert time.monotonic() - started < 8
    finally:
        silent.close()
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"runtara-core: error: no management service answers at {address} "
        f"(no QUIC handshake with {address} within 0.3s)"
    ]


def test_bench_reads_the_servers_settings_from_flags_and_variables(monkeypatch, capsys):
    from runtara.bench import run

    seen: list[run.Options] = []
    monkeypatch.setattr(run, "bench", lambda options: seen.append(options) or {})
    monkeypatch.delenv("RUNTARA_DRIVER", raising=False)
    monkeypatch.setenv("RUNTARA_DATABASE_URL", "sqlite:/nowhere/bench.db")
    monkeypatch.setenv("RUNTARA_MAX_CONCURRENT_INSTANCES", "7")
    assert cli.main(["bench", "--json", "--duration", "1.5s", "--warmup", "0"]) == 0
    assert cli.main(["bench", "--json", "--max-concurrent", "9"]) == 0
    capsys.readouterr()
    first, second = seen
    assert (first.database_url, first.max_concurrent) == ("sqlite:/nowhere/bench.db", 7)
    assert (first.duration, first.warmup) == (1.5, 0.0)
    assert second.max_concurrent == 9


def test_the_wake_and_retention_settings_reach_the_server(tmp_path):
    url = sqlite_url(tmp_path)
    storage = selection.open_driver(config.StorageConfig(database_url=url), workers=1)
    storage.migrate()
    now = clock.utc_now()

    def sleepers(tx):
        for instance_id, ago in (("overdue", dt.timedelta(hours=2)), ("recent", dt.timedelta(0))):
            tx.create_instance(instance_id, "acme", now)
            update = InstanceUpdate(status=InstanceStatus.SUSPENDED, sleep_until=now - ago)
            tx.update_instance(instance_id, update)

    storage.run(sleepers)
    storage.close()
    log = tmp_path / "woken.txt"
    server = ServerProcess(
        *("--database-url", url, "--restart-backoff", "1h", "--wake-grace", "1h"),
        *("--wake-command", f'echo "$RUNTARA_INSTANCE_ID" >> {shlex.quote(str(log))}'),
        *("--retention", "30d", "--retention-interval", "15m"),
        cwd=tmp_path,
    )
    try:
        wait_for(lambda: log.exists() and log.read_text() == "overdue\n", timeout=10)
        time.sleep(0.5)  # ticks go on; a sleeper within the grace is not due
        assert log.read_text() == "overdue\n"
    finally:
        server.signal()
        assert server.wait() == 0
    assert any("(checked every 900s)" in line for line in server.log), server.output()
