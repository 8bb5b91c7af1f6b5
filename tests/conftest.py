from __future__ import annotations

import pytest

from tests.support import LoopbackServer, sqlite_url


@pytest.fixture
def server(tmp_path):
    running = LoopbackServer(sqlite_url(tmp_path))
    yield running
    running.stop()


@pytest.fixture
def client(server):
    return server.client()


@pytest.fixture
def running(server, client):
    """A registered (running) instance id."""
    assert client.register("inst-1").success
    return "inst-1"
