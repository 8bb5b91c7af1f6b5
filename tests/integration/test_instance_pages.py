"""Pages of the instance list by cursor, on each driver: in the storage, through
the management service, in `instances` and on the console's list page."""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import unquote

import pytest

from runtara import errors, records
from runtara.admin.local import LocalAdmin
from runtara.admin.remote import RemoteAdmin
from runtara.http.console import COUNTED, Console
from runtara.http.messages import Request
from runtara.storage import listing
from tests.support import LoopbackServer, run_cli

T0 = dt.datetime(2026, 5, 1, 8, 0, tzinfo=dt.timezone.utc)
# seven instances; three share a created_at, so the ids break the tie
CREATED = {
    "a": 0,
    "b": 1,
    "c": 1,
    "d": 1,
    "e": 2,
    "f": 3,
    "g": 4,
}


@pytest.fixture
def server(database_url):
    running = LoopbackServer(database_url, management_addr=("127.0.0.1", 0))

    def create(tx):
        for name, second in CREATED.items():
            tx.create_instance(
                name, "acme" if name in "aceg" else "globex", T0 + dt.timedelta(seconds=second)
            )

    running.storage.run(create)
    yield running
    running.stop()


def every(admin, **filters) -> list[str]:
    """The whole list, one page of 3 after another, by cursor."""
    seen, cursor = [], None
    while True:
        page = admin.list_instances(limit=3, after=cursor, count_at_most=100, **filters)
        seen += [instance.instance_id for instance in page.items]
        cursor = page.next_cursor
        if cursor is None:
            return seen


def backwards(admin, cursor: str) -> list[str]:
    """The pages before ``cursor``, one after another, as the list shows them."""
    seen = []
    while cursor is not None:
        page = admin.list_instances(limit=3, before=cursor)
        seen = [instance.instance_id for instance in page.items] + seen
        cursor = page.previous_cursor
    return seen


@pytest.fixture(params=["local", "remote"])
def admin(request, server):
    if request.param == "local":
        yield LocalAdmin(server.storage)
        return
    remote = RemoteAdmin(
        server.server.management_address,
        token=server.credentials.operate,
        fingerprint=server.server.identity.fingerprint,
    )
    yield remote
    remote.close()


def test_pages_by_cursor_cover_the_list_once_in_order(admin):
    newest_first = ["g", "f", "e", "b", "c", "d", "a"]
    assert every(admin) == newest_first
    assert every(admin, tenant_id="acme") == ["g", "e", "c", "a"]
    assert every(admin, status=records.InstanceStatus.PENDING) == newest_first
    last = admin.list_instances(limit=3, after=admin.list_instances(limit=3).next_cursor)
    assert [i.instance_id for i in last.items] == ["b", "c", "d"]
    assert backwards(admin, last.previous_cursor) == ["g", "f", "e"]
    tail = admin.list_instances(limit=3, after=last.next_cursor)
    assert [i.instance_id for i in tail.items] == ["a"] and tail.next_cursor is None
    assert backwards(admin, tail.previous_cursor) == newest_first[:-1]
    first = admin.list_instances(limit=3, count_at_most=5)
    assert first.previous_cursor is None and first.total == 5
    assert admin.list_instances(limit=3).total == 7


def test_a_bad_cursor_is_refused(server):
    admin = LocalAdmin(server.storage)
    for cursor in ("", "nonsense", "2026-05-01T08:00:00/x", "2026-05-01T08:00:00+00:00/"):
        with pytest.raises(errors.OperationRefused, match="not a page cursor"):
            admin.list_instances(after=cursor or "/")
    with pytest.raises(errors.OperationRefused, match="cursor"):
        admin.list_instances(offset=3, after=listing.InstanceCursor(T0, "a").encode())


def test_the_management_service_pages_by_cursor_and_by_offset(server, tmp_path):
    target = server.management_target()
    first = run_cli("instances", "--limit", "3", *target, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert [line.split()[0] for line in first.stdout.splitlines()[1:-1]] == ["g", "f", "e"]
    assert first.stdout.splitlines()[-1] == "instances 1-3 of 7"
    hint = re.fullmatch(r"next page: the same command with --after (\S+)\n", first.stderr)
    assert hint is not None, first.stderr
    cursor = hint.group(1).strip("'")
    second = run_cli("instances", "--limit", "3", "--after", cursor, *target, cwd=tmp_path)
    assert [line.split()[0] for line in second.stdout.splitlines()[1:-1]] == ["b", "c", "d"]
    assert second.stdout.splitlines()[-1] == "3 instances after the cursor, of 7"
    # an older client's offset still pages
    old = run_cli("instances", "--limit", "3", "--offset", "3", *target, cwd=tmp_path)
    assert [line.split()[0] for line in old.stdout.splitlines()[1:-1]] == ["b", "c", "d"]
    both = run_cli("instances", "--offset", "3", "--after", cursor, *target, cwd=tmp_path)
    assert both.returncode == 2 and "give one" in both.stderr
    bad = run_cli("instances", "--after", "nonsense", *target, cwd=tmp_path)
    assert bad.returncode == 1 and "not a page cursor" in bad.stderr


def test_the_console_links_pages_by_cursor_and_caps_its_counts(server, monkeypatch):
    console = Console(LocalAdmin(server.storage), runs_dir=None)
    monkeypatch.setattr("runtara.http.console.PAGE", 3)
    page = console.instances(Request("GET", "/instances")).body.decode()
    assert "3 shown of 7, newest first" in page and "newer" not in page
    older = re.search(r'href="(/instances\?after=[^"]+)">older', page).group(1)
    after = dict(part.split("=", 1) for part in older.split("?", 1)[1].split("&"))
    second = console.instances(
        Request("GET", "/instances", query={"after": unquote(after["after"])})
    ).body.decode()
    assert re.findall(r'class="id"><a href="/instances/(\w)"', second) == ["b", "c", "d"]
    assert "&laquo; newest" in second and "&larr; newer" in second
    monkeypatch.setattr("runtara.http.console.COUNTED", 5)
    capped = console.instances(Request("GET", "/instances")).body.decode()
    assert "3 shown of 5+" in capped and "all 5+" in capped
    assert COUNTED == 1000
