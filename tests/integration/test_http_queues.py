"""The console's queues and schedules pages over HTTP: who may see and act, the
confirmation before an action, what an action changes, names escaped, unknown
names answered clearly; and what an instance's page says of its queue and why
it waits."""

from __future__ import annotations

import datetime as dt
import html

import markupsafe
import pytest

from runtara import records
from runtara.admin.local import LocalAdmin
from runtara.config import StorageConfig
from runtara.launcher.spec import LaunchSpec
from runtara.storage import launches, selection
from tests.browser.serving import HttpServing

ODD = '<b id="odd">"&amp;</b>'
"""A queue and schedule name that would be markup if it were not escaped."""
SHOWN = str(markupsafe.escape(ODD))
"""How the pages show it."""
FAR = dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A server without a launcher (nothing is claimed: started instances stay
    due), a queue with limits, an odd one paused, and three schedules (one for the
    trigger alone)."""
    folder = tmp_path_factory.mktemp("queues")
    serving = HttpServing(folder, "--no-launcher")
    storage = selection.open_driver(StorageConfig(database_url=serving.url), workers=1)
    admin = LocalAdmin(storage)
    admin.set_queue("batch", concurrency=2, per_key=1, rate=(10, 60.0))
    admin.set_queue(ODD, paused=True)
    spec = LaunchSpec(command=("true",), queue="batch", key="customer-7", priority=5)
    admin.start_instance("waits-1", "acme", spec, None)
    admin.start_instance("later-1", "acme", spec, None, delay=3600)
    admin.start_instance("held-1", "acme", LaunchSpec(command=("true",), queue=ODD), None)
    now = dt.datetime.now(dt.timezone.utc)
    for name, paused in (("nightly", False), (ODD, True), ("adhoc", False)):
        row = records.Schedule(
            name=name,
            cron="0 3 * * *",
            every=None,
            timezone="Europe/Paris",
            overlap="skip",
            catch_up="one",
            tenant_id="acme",
            spec=LaunchSpec(command=("true",)).to_json(),
            input=None,
            created_at=now,
            next_tick_at=FAR,
            paused=paused,
            ticks=3,
            skipped=1,
            last_tick_at=now - dt.timedelta(hours=2),
            last_instance_id="waits-1",
        )
        storage.run(lambda tx, row=row: tx.put_schedule(row))
    yield serving, admin
    storage.close()
    assert serving.stop() == 0


def origin(serving: HttpServing) -> dict[str, str]:
    host = f"127.0.0.1:{serving.port}"
    return {"Origin": f"http://{host}", "Host": host}


def queue(admin: LocalAdmin, name: str) -> records.Queue:
    return next(view.queue for view in admin.list_queues() if view.queue.name == name)


def schedule(admin: LocalAdmin, name: str) -> records.Schedule:
    return next(found for found in admin.list_schedules() if found.name == name)


def test_without_a_credential_the_pages_ask_to_log_in(site):
    serving, _ = site
    for path in ("/queues", "/schedules"):
        reply = serving.get(path)
        assert reply.status == 401 and "Log in" in reply.text
        assert serving.post(path[:-1] + "s/batch/pause", {"confirmed": "yes"}).status == 401


def test_the_queues_page_shows_limits_figures_and_escapes_names(site):
    serving, _ = site
    page = serving.get("/queues", **serving.session("operate"))
    assert page.status == 200
    text = page.text
    assert 'href="/queues" class="here"' in text  # the navigation shows where one is
    assert 'href="/schedules"' in text and 'href="/instances"' in text
    assert ODD not in text and SHOWN in text
    batch = text.split('<td class="id">batch</td>', 1)[1].split("</tr>", 1)[0]
    cells = [html.unescape(cell.split("</td>")[0].strip()) for cell in batch.split("<td>")[1:]]
    # state, concurrency, per key, rate, running, due, later
    assert cells[1:7] == ["2", "1", "10 per 1 min", "0", "1", "1"]
    assert "active" in cells[0] and ">Pause</button>" in batch
    odd = text.split(SHOWN + "</td>", 1)[1].split("</tr>", 1)[0]
    assert "paused" in odd and ">Resume</button>" in odd
    assert "1 due, held while paused" in odd


def test_the_read_credential_sees_the_pages_without_actions(site):
    serving, admin = site
    reader = serving.session("read")
    for path in ("/queues", "/schedules"):
        page = serving.get(path, **reader)
        assert page.status == 200 and '<button type="submit">Pause' not in page.text
        assert "This session may only read" in page.text
    refused = serving.post("/queues/batch/pause", {"confirmed": "yes"}, **reader, **origin(serving))
    assert refused.status == 403
    refused = serving.post(
        "/schedules/nightly/trigger", {"confirmed": "yes"}, **serving.bearer("read")
    )
    assert refused.status == 403
    assert not queue(admin, "batch").paused and schedule(admin, "nightly").ticks == 3


def test_pausing_a_queue_asks_then_pauses_and_resumes(site):
    serving, admin = site
    operator = serving.session("operate")
    ask = serving.post("/queues/batch/pause", {}, **operator, **origin(serving))
    assert ask.status == 200 and "Pause queue batch?" in ask.text
    assert 'name="confirmed" value="yes"' in ask.text and 'action="/queues/batch/pause"' in ask.text
    assert 'name="payload"' not in ask.text
    assert not queue(admin, "batch").paused
    done = serving.post("/queues/batch/pause", {"confirmed": "yes"}, **operator, **origin(serving))
    assert done.status == 303 and done.headers["location"] == "/queues?sent=pause&queue=batch"
    assert queue(admin, "batch").paused
    assert queue(admin, "batch").concurrency == 2  # the limits stay
    serving.logged("console: queue 'batch' paused (from 127.0.0.1)")
    page = serving.get(done.headers["location"], **operator)
    assert "Queue batch paused" in page.text
    details = serving.get("/instances/waits-1", **operator).text
    assert "queue batch is paused" in details
    resumed = serving.post(
        "/queues/batch/resume", {"confirmed": "yes"}, **operator, **origin(serving)
    )
    assert resumed.status == 303 and not queue(admin, "batch").paused


def test_an_instance_page_shows_its_queue_key_priority_and_why_it_waits(site):
    serving, _ = site
    operator = serving.session("operate")
    page = html.unescape(serving.get("/instances/later-1", **operator).text)
    facts = page.split("<dt>Queue</dt>", 1)[1].split("<dt>Launches</dt>", 1)[0]
    assert '<a href="/queues">batch</a>' in facts
    assert "<dt>Key</dt><dd>customer-7</dd>" in facts
    assert "<dt>Priority</dt><dd>5</dd>" in facts
    assert "<dt>Waits</dt>" in facts and "not before " in facts
    held = serving.get("/instances/held-1", **operator).text
    assert f"queue {SHOWN} is paused" in held and ODD not in held


def test_the_schedules_page_lists_each_schedule(site):
    serving, _ = site
    text = serving.get("/schedules", **serving.session("operate")).text
    assert ODD not in text and SHOWN in text
    nightly = text.split('<td class="id">nightly', 1)[1].split("</tr>", 1)[0]
    assert "cron <code>0 3 * * *</code>" in nightly and "Europe/Paris" in nightly
    assert "overlap skip, catch-up one" in nightly
    assert "2099-01-01 00:00:00.000Z" in nightly  # the next tick
    assert "2 h ago" in nightly  # the last tick
    assert '<a href="/instances/waits-1">waits-1</a>' in nightly
    assert "<td>3</td>" in nightly and "<td>1</td>" in nightly  # ticks, skipped
    assert ">Pause</button>" in nightly and ">Trigger</button>" in nightly
    odd = text.split(SHOWN + "<div", 1)[1].split("</tr>", 1)[0]
    assert ">Resume</button>" in odd


def test_a_schedule_is_paused_and_resumed_after_confirming(site):
    serving, admin = site
    operator = serving.session("operate")
    ask = serving.post("/schedules/nightly/pause", {}, **operator, **origin(serving))
    assert ask.status == 200 and "Pause schedule nightly?" in ask.text
    assert not schedule(admin, "nightly").paused
    done = serving.post(
        "/schedules/nightly/pause", {"confirmed": "yes"}, **operator, **origin(serving)
    )
    assert done.status == 303
    assert done.headers["location"] == "/schedules?sent=pause&schedule=nightly"
    assert schedule(admin, "nightly").paused
    assert "Schedule nightly paused" in serving.get(done.headers["location"], **operator).text
    serving.post("/schedules/nightly/resume", {"confirmed": "yes"}, **operator, **origin(serving))
    assert not schedule(admin, "nightly").paused


def test_triggering_a_schedule_starts_an_instance_and_links_it(site):
    serving, admin = site
    done = serving.post(
        "/schedules/adhoc/trigger", {"confirmed": "yes"}, **serving.bearer("operate")
    )
    assert done.status == 303, done.text
    started = schedule(admin, "adhoc").last_instance_id
    assert started is not None and started.startswith("adhoc@")
    assert admin.instance_details(started, recent_events=0) is not None
    page = serving.get(done.headers["location"], **serving.bearer("operate")).text
    assert "Schedule adhoc triggered" in page
    assert f'href="/instances/{started.replace(":", "%3A").replace("@", "%40")}"' in page


@pytest.mark.parametrize(
    ("method", "path", "fields", "status", "says"),
    [
        ("POST", "/queues/ghost/pause", {"confirmed": "yes"}, 404, "No queue is named 'ghost'"),
        ("POST", "/queues/ghost/pause", {}, 404, "No queue is named 'ghost'"),
        ("POST", "/queues/batch/drain", {"confirmed": "yes"}, 404, "Nothing answers POST"),
        ("GET", "/queues/batch", None, 404, "Nothing answers GET"),
        ("POST", "/schedules/ghost/trigger", {"confirmed": "yes"}, 404, "No schedule is named"),
        ("POST", "/schedules/nightly/remove", {"confirmed": "yes"}, 404, "Nothing answers POST"),
        ("GET", "/schedules/nightly", None, 404, "Nothing answers GET"),
    ],
)
def test_unknown_names_and_actions_are_answered_clearly(site, method, path, fields, status, says):
    serving, admin = site
    operator = serving.bearer("operate")
    reply = serving.send(method, path, fields, **operator)
    assert reply.status == status, reply.text
    assert says in html.unescape(reply.text)
    assert "ghost" not in {view.queue.name for view in admin.list_queues()}


def test_an_action_from_another_sites_page_is_refused(site):
    serving, admin = site
    refused = serving.post(
        "/queues/batch/pause",
        {"confirmed": "yes"},
        **serving.session("operate"),
        Origin="https://evil.example",
    )
    assert refused.status == 403 and not queue(admin, "batch").paused


def test_an_instance_page_links_its_parent_and_its_children(site):
    serving, admin = site
    operator = serving.session("operate")
    now = dt.datetime.now(dt.timezone.utc)
    admin.start_instance("parent-9", "acme", LaunchSpec(command=("true",)), None)

    def children(tx):
        for child, policy in (("child-a", "cancel"), ("child-b", "abandon")):
            launches.start_child(tx, "parent-9", child, None, {}, b"{}", policy, now)

    admin.storage.run(children)
    parent = serving.get("/instances/parent-9", **operator).text
    assert 'href="/instances/child-a">child-a</a>' in parent
    assert 'href="/instances/child-b">child-b</a>' in parent
    child = serving.get("/instances/child-b", **operator).text
    assert 'href="/instances/parent-9">parent-9</a>' in child
    assert "on its cancel: abandon" in child


def test_fork_selected_copies_each_ticked_instance_after_a_count(site):
    serving, admin = site
    operator = serving.session("operate")
    now = dt.datetime.now(dt.timezone.utc)
    for instance_id in ("saved-1", "saved-2"):
        admin.start_instance(instance_id, "acme", LaunchSpec(command=("true",)), None)
        admin.storage.run(
            lambda tx, i=instance_id: (
                tx.insert_checkpoint(i, "step-1", b"state", now),
                tx.update_instance(i, records.InstanceUpdate(checkpoint_id="step-1")),
            )
        )
    picked = {"action": "fork", "pick.0": "saved-1", "pick.1": "saved-2"}
    asked = serving.post("/instances", picked, **operator, **origin(serving))
    assert asked.status == 200 and "Fork 2 instances?" in asked.text
    done = serving.post("/instances", {**picked, "confirmed": "yes"}, **operator, **origin(serving))
    assert done.status == 303
    assert "Forked 2 instances." in serving.get(done.headers["location"], **operator).text
    forks = [
        i.instance_id for i in admin.list_instances(limit=1000).items if "-fork-" in i.instance_id
    ]
    assert sorted(fork.split("-fork-")[0] for fork in forks) == ["saved-1", "saved-2"]
    for fork in forks:
        launch = admin.instance_details(fork, recent_events=0).launch
        assert (launch.origin_checkpoint, launch.origin_instance) == ("step-1", fork[:7])
