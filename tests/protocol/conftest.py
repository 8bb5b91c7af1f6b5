"""Protocol behaviour tests: the server's core over the in-memory driver, no sockets."""

from __future__ import annotations

import pytest

from tests.protocol.harness import CoreServer


@pytest.fixture
def server():
    """The core over the in-memory driver; the ``client`` and ``running`` fixtures
    of tests/conftest.py use this one here."""
    return CoreServer()
