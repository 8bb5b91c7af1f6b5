"""Crash safety under load, the short version of ``tests/reliability/crash.py``
(which says what is checked, and how to run the long version)."""

from __future__ import annotations

import pytest

from tests.reliability import crash

CLIENTS = 16

pytestmark = pytest.mark.slow


def driver_of(url: str) -> str:
    return "postgres" if url.startswith("postgres") else "sqlite"


def test_no_acknowledged_checkpoint_is_lost_when_the_server_is_killed(database_url, tmp_path):
    report = crash.run(
        crash.Settings(
            driver=driver_of(database_url),
            database_url=database_url,
            workdir=tmp_path,
            clients=CLIENTS,
            kills=3,
            duration=4.0,
            log=print,
        )
    )
    summary = report.summary()
    assert report.ok, summary
    assert not report.lost, summary
    assert report.kills_survived == 3, summary
    assert report.resumes == 3 * CLIENTS, summary
    assert report.acknowledged >= 10 * CLIENTS, summary
    assert set(report.failures) <= {crash.CUT_OFF}, summary


def test_no_acknowledged_checkpoint_is_lost_when_postgresql_crashes(
    postgres_cluster, postgres_url, tmp_path
):
    report = crash.run(
        crash.Settings(
            driver="postgres",
            database_url=postgres_url,
            workdir=tmp_path,
            clients=CLIENTS,
            kills=0,
            postgres_kills=2,
            duration=4.0,
            postgres=postgres_cluster,
            log=print,
        )
    )
    summary = report.summary()
    assert report.ok, summary
    assert not report.lost, summary
    assert report.postgres_restarts == 2, summary
    # the requests in flight when PostgreSQL went down were answered with errors
    assert report.postgres_outage_failures > 0, summary
    assert report.acknowledged >= 10 * CLIENTS, summary
