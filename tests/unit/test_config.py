from __future__ import annotations

import argparse
import ast
from pathlib import Path

import attrs
import pytest

from runtara import config, errors
from runtara.sdk import config as sdk_config

TABLES = {
    "server": (config.SERVER_SETTINGS, config.ServerConfig),
    "tools": (config.TOOL_SETTINGS, config.ToolConfig),
    "bench": (config.BENCH_SETTINGS, config.ServerConfig),
    "sdk": (sdk_config.SETTINGS, sdk_config.SdkConfig),
}


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("90", 90.0),
        ("90s", 90.0),
        ("0.5", 0.5),
        ("500ms", 0.5),
        ("15m", 900.0),
        ("12h", 43200.0),
        ("30d", 2592000.0),
        (" 10 S ", 10.0),
        ("1_000", 1000.0),
    ],
)
def test_every_duration_form(raw, seconds):
    assert config.duration(raw) == seconds
    assert config.duration_or_zero(raw) == seconds


@pytest.mark.parametrize("raw", ["soon", "", "s", "10 sec", "5sm", "nan", "inf", "1h30m"])
def test_what_is_not_a_duration(raw):
    with pytest.raises(ValueError, match="is not a duration such as 90, 90s, 500ms, 15m"):
        config.duration(raw)


def test_duration_bounds():
    with pytest.raises(ValueError, match="'0' must be a positive duration"):
        config.duration("0")
    with pytest.raises(ValueError, match="'-1s' must be a positive duration"):
        config.duration("-1s")
    assert config.duration_or_zero("0") == 0.0
    with pytest.raises(ValueError, match="'-1' must be zero or a positive duration"):
        config.duration_or_zero("-1")
    with pytest.raises(ValueError, match="longer than 100 years"):
        config.duration("36600d")


def test_milliseconds_take_a_bare_number_as_milliseconds_and_any_duration_form():
    parse = config.milliseconds(1)
    assert [parse(raw) for raw in ("1500", "1.5s", "2m", "250ms")] == [1500, 1500, 120000, 250]
    with pytest.raises(ValueError, match="'1.5' is not a whole number of milliseconds$"):
        parse("1.5")
    with pytest.raises(ValueError, match="'soon' is not a whole number of milliseconds nor"):
        parse("soon")
    with pytest.raises(ValueError, match="^0 ms is less than 1 ms$"):
        parse("0s")


def test_addresses_for_the_tools_and_for_instances():
    assert config.address("localhost:0") == ("127.0.0.1", 0)
    assert config.address("[::1]:8002") == ("::1", 8002)
    assert config.ip_port("[::1]:8002") == ("::1", 8002)
    with pytest.raises(ValueError, match="'localhost:8001' is not IP:port"):
        config.ip_port("localhost:8001")
    with pytest.raises(ValueError, match=r"'127.0.0.1:0' is not IP:port \('0' is not a port"):
        config.ip_port("127.0.0.1:0")


def test_a_flag_wins_over_its_variable_and_an_empty_variable_counts_as_unset():
    arguments = argparse.Namespace(port="9000", host=None)
    environ = {"RUNTARA_QUIC_PORT": "8000", "RUNTARA_QUIC_HOST": "  "}
    assert config.resolve(config.SERVER_SETTINGS, arguments, environ) == {"port": 9000}
    assert config.resolve(config.SERVER_SETTINGS, None, environ) == {"port": 8000}


def test_a_bad_value_names_the_flag_and_the_variable_or_without_a_flag_the_text():
    (port,) = (s for s in config.SERVER_SETTINGS if s.name == "port")
    with pytest.raises(errors.ConfigError, match="^--port / RUNTARA_QUIC_PORT: 'x' is not a"):
        port.read("x")
    (timeout,) = (s for s in sdk_config.SETTINGS if s.name == "connect_timeout_ms")
    with pytest.raises(errors.ConfigError, match="^RUNTARA_CONNECT_TIMEOUT_MS='x': 'x' is not"):
        timeout.read("x")


@pytest.mark.parametrize("table", TABLES)
def test_every_setting_has_a_field_with_a_default_a_unique_variable_and_help(table):
    settings, config_class = TABLES[table]
    fields = attrs.fields_dict(config_class)
    for setting in settings:
        assert setting.name in fields and setting.env.startswith("RUNTARA_"), setting
        assert setting.help, setting
        assert (setting.flag is None) == (table == "sdk"), setting
    assert len({s.env for s in settings}) == len(settings)
    assert len({s.name for s in settings}) == len(settings)


def test_time_settings_use_the_one_duration_parser():
    durations = (config.duration, config.duration_or_zero)
    for settings, _ in TABLES.values():
        for setting in settings:
            if setting.env.endswith(("_SECONDS", "_MS")) or setting.metavar == "DURATION":
                parse = setting.parse
                assert parse in durations or parse.__qualname__.startswith("milliseconds"), setting


def test_the_config_module_imports_nothing_of_the_server_or_the_storage():
    source = Path(config.__file__).read_text()
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert not any(name.startswith(("runtara.server", "runtara.storage")) for name in imported)
