from __future__ import annotations

import pytest

from runtara import errors
from runtara.sdk import Instance, SdkConfig

REQUIRED = {"RUNTARA_INSTANCE_ID": "inst", "RUNTARA_TENANT_ID": "acme"}


def test_every_upstream_variable_is_read():
    config = SdkConfig.from_env(
        {
            **REQUIRED,
            "RUNTARA_SERVER_ADDR": "[::1]:9001",
            "RUNTARA_SERVER_NAME": "core.internal",
            "RUNTARA_SKIP_CERT_VERIFICATION": "1",
            "RUNTARA_CONNECT_TIMEOUT_MS": "1500",
            "RUNTARA_REQUEST_TIMEOUT_MS": "2500",
            "RUNTARA_SIGNAL_POLL_INTERVAL_MS": "0",
            "RUNTARA_HEARTBEAT_INTERVAL_MS": "0",
            "RUNTARA_CHECKPOINT_ID": "step-3",
        }
    )
    assert config == SdkConfig(
        instance_id="inst",
        tenant_id="acme",
        server_addr="[::1]:9001",
        server_name="core.internal",
        skip_cert_verification=True,
        connect_timeout_ms=1500,
        request_timeout_ms=2500,
        signal_poll_interval_ms=0,
        heartbeat_interval_ms=0,
        checkpoint_id="step-3",
    )
    assert config.address == ("::1", 9001)


def test_defaults_are_upstreams():
    config = SdkConfig.from_env(REQUIRED)
    assert config.address == ("127.0.0.1", 8001)
    assert config.server_name == "localhost"
    assert not config.skip_cert_verification
    assert (config.connect_timeout_ms, config.request_timeout_ms) == (10_000, 30_000)
    assert (config.signal_poll_interval_ms, config.heartbeat_interval_ms) == (1_000, 30_000)
    assert config.checkpoint_id is None
    assert config.server_wait == 600.0  # ten minutes


@pytest.mark.parametrize(
    ("value", "milliseconds"), [("0", 0), ("2500", 2_500), ("2s", 2_000), ("10m", 600_000)]
)
def test_the_server_wait_takes_the_duration_forms(value, milliseconds):
    config = SdkConfig.from_env({**REQUIRED, "RUNTARA_SERVER_WAIT": value})
    assert config.server_wait_ms == milliseconds


@pytest.mark.parametrize(
    ("value", "message"),
    [("-1s", "less than 0"), ("soon", "not a whole number"), ("0.5", "not a whole number")],
)
def test_a_bad_server_wait_names_the_variable(value, message):
    with pytest.raises(errors.ConfigError, match=f"^RUNTARA_SERVER_WAIT='{value}': .*{message}"):
        SdkConfig.from_env({**REQUIRED, "RUNTARA_SERVER_WAIT": value})


@pytest.mark.parametrize(
    ("value", "skip"), [("true", True), ("TRUE", True), ("1", True), ("yes", False), ("0", False)]
)
def test_skip_cert_verification_is_true_or_1(value, skip):
    config = SdkConfig.from_env({**REQUIRED, "RUNTARA_SKIP_CERT_VERIFICATION": value})
    assert config.skip_cert_verification is skip


def test_arguments_win_over_variables_and_can_replace_them():
    environ = {**REQUIRED, "RUNTARA_SERVER_ADDR": "not an address"}
    config = SdkConfig.from_env(environ, server_addr="10.0.0.1:7000", instance_id="other")
    assert (config.instance_id, config.address) == ("other", ("10.0.0.1", 7000))
    assert SdkConfig.from_env({}, instance_id="a", tenant_id="b").instance_id == "a"
    with pytest.raises(errors.ConfigError, match="RUNTARA_INSTANCE_ID, RUNTARA_TENANT_ID$"):
        SdkConfig.from_env({})


@pytest.mark.parametrize(
    "value", ["localhost:8001", "127.0.0.1", "127.0.0.1:", "127.0.0.1:70000", "1.2.3.4:http"]
)
def test_a_malformed_server_address_names_the_variable(value):
    with pytest.raises(errors.ConfigError, match=r"^RUNTARA_SERVER_ADDR=.*IP:port"):
        SdkConfig.from_env({**REQUIRED, "RUNTARA_SERVER_ADDR": value})


def test_the_blocking_instance_reads_the_process_environment(monkeypatch):
    monkeypatch.setenv("RUNTARA_INSTANCE_ID", "from-env")
    monkeypatch.setenv("RUNTARA_TENANT_ID", "acme")
    monkeypatch.setenv("RUNTARA_SERVER_ADDR", "localhost:8001")
    with pytest.raises(errors.ConfigError, match="RUNTARA_SERVER_ADDR='localhost:8001'"):
        Instance()
    monkeypatch.setenv("RUNTARA_SERVER_ADDR", "127.0.0.1:8001")
    with Instance() as instance:
        assert instance.instance_id == "from-env"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("RUNTARA_CONNECT_TIMEOUT_MS", "soon", "not a whole number"),
        ("RUNTARA_REQUEST_TIMEOUT_MS", "0", "less than 1"),
        ("RUNTARA_HEARTBEAT_INTERVAL_MS", "-5", "less than 0"),
    ],
)
def test_bad_numbers_name_the_variable(variable, value, message):
    with pytest.raises(errors.ConfigError, match=f"^{variable}='{value}': .*{message}"):
        SdkConfig.from_env({**REQUIRED, variable: value})


@pytest.mark.parametrize("missing", ["RUNTARA_INSTANCE_ID", "RUNTARA_TENANT_ID"])
def test_required_variables(missing):
    environ = {**REQUIRED, missing: "  "}
    with pytest.raises(errors.ConfigError, match=f"^required and not set: {missing}$"):
        SdkConfig.from_env(environ)


def test_arguments_are_checked_too():
    with pytest.raises(errors.ConfigError, match="server_addr: 'example.com:1' is not IP:port"):
        SdkConfig(instance_id="a", tenant_id="b", server_addr="example.com:1")
    with pytest.raises(errors.ConfigError, match="instance_id: must not be empty"):
        SdkConfig(instance_id="", tenant_id="b")


def test_millisecond_variables_take_every_duration_form():
    config = SdkConfig.from_env(
        {
            **REQUIRED,
            "RUNTARA_CONNECT_TIMEOUT_MS": "2s",
            "RUNTARA_REQUEST_TIMEOUT_MS": "1.5m",
            "RUNTARA_SIGNAL_POLL_INTERVAL_MS": "250ms",
            "RUNTARA_HEARTBEAT_INTERVAL_MS": "0",
        }
    )
    assert (config.connect_timeout_ms, config.request_timeout_ms) == (2_000, 90_000)
    assert (config.signal_poll_interval_ms, config.heartbeat_interval_ms) == (250, 0)
    with pytest.raises(
        errors.ConfigError,
        match=r"^RUNTARA_CONNECT_TIMEOUT_MS='0.5': '0.5' is not a whole number of milliseconds$",
    ):
        SdkConfig.from_env({**REQUIRED, "RUNTARA_CONNECT_TIMEOUT_MS": "0.5"})


def test_the_sdk_reads_its_variables_through_the_shared_settings():
    from runtara import config
    from runtara.sdk import config as sdk_config

    assert all(isinstance(setting, config.Setting) for setting in sdk_config.SETTINGS)
    assert [setting.env for setting in sdk_config.SETTINGS] == [
        setting.env for setting in sdk_config.SETTINGS
    ]
    fields = {setting.name: setting for setting in sdk_config.SETTINGS}
    assert fields["server_name"].parse is config.text
    assert fields["skip_cert_verification"].parse is config.true_or_1
