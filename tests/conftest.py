from __future__ import annotations

import os
import tempfile

import pytest

from tests import postgres
from tests.support import LoopbackServer, sqlite_url

# The servers the tests start run one process unless a test asks for more with
# --processes: the default, one per core, would have every test's server compete
# with the suite's own worker processes for the machine's cores.
os.environ.setdefault("RUNTARA_PROCESSES", "1")
# The servers the tests start write their runtime files in a folder of this test
# process (each test gets its own, below), never in the user's.
os.environ["RUNTARA_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="runtara-runtime-")


@pytest.fixture(autouse=True)
def runtime_folder(tmp_path_factory, monkeypatch):
    """Each test's servers write their runtime files in a folder of its own, where
    only its tools look (not the user's, nor another test's)."""
    folder = tmp_path_factory.mktemp("runtime")
    monkeypatch.setenv("RUNTARA_RUNTIME_DIR", str(folder))
    return folder


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path):
    """A fresh database of each driver in turn."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def server(database_url):
    running = LoopbackServer(database_url)
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


@pytest.fixture(scope="session")
def postgres_cluster():
    bin_dir = postgres.find_bin_dir()
    if bin_dir is None:
        message = "PostgreSQL server binaries (pg_ctl, initdb) not found"
        if postgres.REQUIRED:
            pytest.fail(f"{message}, and RUNTARA_TEST_REQUIRE_POSTGRES=1")
        pytest.skip(message)
    cluster = postgres.Cluster(bin_dir)
    yield cluster
    cluster.destroy()


@pytest.fixture
def postgres_url(postgres_cluster):
    """The URL of a fresh, empty schema in the throwaway cluster."""
    schema = postgres_cluster.new_schema()
    yield postgres_cluster.url(schema)
    postgres_cluster.drop_schema(schema)
