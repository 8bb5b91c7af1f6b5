"""Bulk actions select their instances page by page, by cursor."""

from __future__ import annotations

import datetime as dt
import itertools

from runtara import records
from runtara.admin.local import LocalAdmin
from runtara.cli import bulk
from runtara.launcher.spec import LaunchSpec
from tests.support import migrated_storage

START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
PENDING = records.InstanceStatus.PENDING


def test_a_selection_longer_than_a_page_is_read_whole_newest_first(database_url, monkeypatch):
    monkeypatch.setattr(bulk, "PAGE", 2)
    seconds = itertools.count()
    with migrated_storage(database_url, workers=2) as storage:
        admin = LocalAdmin(storage, now=lambda: START + dt.timedelta(seconds=next(seconds)))
        for number in range(7):
            admin.start_instance(f"job-{number}", "acme", LaunchSpec(("true",)), None)
        everything = bulk.select(admin, bulk.Filter(), frozenset({PENDING}))
        assert [i.instance_id for i in everything] == [f"job-{n}" for n in range(6, -1, -1)]
        # The oldest ones are left out once a page reaches them.
        recent = bulk.Filter(created_after=START + dt.timedelta(seconds=3))
        assert [i.instance_id for i in bulk.select(admin, recent, frozenset({PENDING}))] == [
            "job-6",
            "job-5",
            "job-4",
            "job-3",
        ]
