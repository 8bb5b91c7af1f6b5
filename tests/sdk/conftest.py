from __future__ import annotations

import datetime as dt

import pytest

from runtara import records
from runtara.records import EventFilter
from runtara.sdk import Instance, SdkConfig
from tests.support import LoopbackServer, sqlite_url


def config_for(address, instance_id="inst-1", **overrides) -> SdkConfig:
    host, port = address
    settings = {
        "instance_id": instance_id,
        "tenant_id": "tenant",
        "server_addr": f"{host}:{port}",
        "skip_cert_verification": True,
        "connect_timeout_ms": 2000,
        "request_timeout_ms": 5000,
        "heartbeat_interval_ms": 0,
        "signal_poll_interval_ms": 0,
        "server_wait_ms": 0,  # a test about waiting for the server says so
        **overrides,
    }
    return SdkConfig(**settings)


def send_signal(server, instance_id, signal_type, payload=b""):
    now = dt.datetime.now(dt.timezone.utc)
    server.storage.run(lambda tx: tx.put_signal(instance_id, signal_type, payload, now))


def send_custom_signal(server, instance_id, checkpoint_id, payload=b""):
    now = dt.datetime.now(dt.timezone.utc)
    server.storage.run(lambda tx: tx.put_custom_signal(instance_id, checkpoint_id, payload, now))


def events(server, instance_id, event_type: records.EventType):
    return server.read(
        lambda tx: list(reversed(tx.list_events(instance_id, EventFilter(event_type=event_type))))
    )


@pytest.fixture
def server(tmp_path):
    """A loopback server on SQLite: the SDK does not depend on the driver, whose
    behaviour tests/integration covers on every driver."""
    running = LoopbackServer(sqlite_url(tmp_path))
    yield running
    running.stop()


@pytest.fixture
def make_config(server):
    """SdkConfig for the loopback server: ``make_config(instance_id, **settings)``."""
    return lambda instance_id="inst-1", **overrides: config_for(
        server.address, instance_id, **overrides
    )


@pytest.fixture
def instance(make_config):
    """A registered blocking Instance ``inst-1``."""
    with Instance(make_config()) as sdk_instance:
        sdk_instance.register()
        yield sdk_instance
