"""Protocol behaviour tests: the server's core over the in-memory driver, no sockets."""

from __future__ import annotations

import pytest

from tests.protocol.harness import CoreServer


@pytest.fixture
def server():
    return CoreServer()


@pytest.fixture
def client(server):
    return server.client()


@pytest.fixture
def running(server, client):
    """A registered (running) instance id."""
    assert client.register("inst-1").success
    return "inst-1"
