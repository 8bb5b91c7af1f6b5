"""The console's queues and schedules in a real browser: reach them from the
navigation, pause and resume a queue with the page's dialog and through the
confirmation page (without JavaScript), read the schedules, pause one, trigger
one and follow the link to the instance it started, which says its queue and
why it waits; and look without acting with the read token."""

from __future__ import annotations

import datetime as dt

import pytest

from runtara import records
from runtara.admin.local import LocalAdmin
from runtara.config import StorageConfig
from runtara.launcher.spec import LaunchSpec
from runtara.storage import selection
from tests.browser.serving import READ_TOKEN, HttpServing
from tests.browser.test_console import log_in

FAR = dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A server without a launcher (started instances stay due), queues with
    limits, instances waiting in them, and schedules whose ticks are far away."""
    folder = tmp_path_factory.mktemp("console-queues")
    serving = HttpServing(folder, "--no-launcher")
    storage = selection.open_driver(StorageConfig(database_url=serving.url), workers=1)
    admin = LocalAdmin(storage)
    admin.set_queue("batch", concurrency=2, per_key=1)
    admin.set_queue("mail", rate=(100, 60.0))
    spec = LaunchSpec(command=("true",), queue="batch", key="customer-7", priority=5)
    admin.start_instance("invoice-31", "acme", spec, None)
    admin.start_instance("invoice-32", "acme", spec, None, delay=3600)
    admin.start_instance("welcome-1", "acme", LaunchSpec(command=("true",), queue="mail"), None)
    now = dt.datetime.now(dt.timezone.utc)
    for name, cron, every, last in (
        ("nightly-report", "0 3 * * *", None, "invoice-31"),
        ("sync-every-5", None, 300.0, None),
    ):
        row = records.Schedule(
            name=name,
            cron=cron,
            every=every,
            timezone="Europe/Paris" if cron else "UTC",
            overlap="skip",
            catch_up="one",
            tenant_id="acme",
            spec=LaunchSpec(command=("true",), queue="batch").to_json(),
            input=None,
            created_at=now - dt.timedelta(days=3),
            next_tick_at=FAR,
            last_tick_at=now - dt.timedelta(hours=21) if last else None,
            last_instance_id=last,
            ticks=12 if last else 0,
            skipped=2 if last else 0,
        )
        storage.run(lambda tx, row=row: tx.put_schedule(row))
    yield serving, admin
    storage.close()
    assert serving.stop() == 0


def row(page, name: str):
    """The table row of the queue or schedule ``name``."""
    return page.locator("tbody tr").filter(has=page.locator(f"td.id:text-is('{name}')"))


def schedule_row(page, name: str):
    return page.locator("tbody tr").filter(has=page.locator("td.id", has_text=name))


def cells(locator) -> list[str]:
    return [text.strip() for text in locator.locator("td").all_inner_texts()]


def paused(admin: LocalAdmin, name: str) -> bool:
    return next(view.queue.paused for view in admin.list_queues() if view.queue.name == name)


def logged_in_on(browser, serving: HttpServing, section: str):
    """An operator's session, on the page of ``section`` reached from the header."""
    context, page = log_in(browser, serving.base)
    page.click(f"header nav >> text={section}")
    page.wait_for_url(f"**/{section.lower()}")
    assert page.locator("h1").inner_text() == section
    return context, page


def test_an_operator_pauses_and_resumes_a_queue(browser, site, screenshots):
    serving, admin = site
    context, page = logged_in_on(browser, serving, "Queues")
    assert page.locator("header nav a.here").inner_text() == "Queues"
    assert cells(row(page, "batch"))[:8] == ["batch", "active", "2", "1", "-", "0", "1", "1"]
    assert cells(row(page, "mail"))[4] == "100 per 1 min"
    assert cells(row(page, "default"))[1:8] == ["active", "-", "-", "-", "0", "0", "0"]

    # Dismissing the dialog sends nothing.
    page.once("dialog", lambda dialog: dialog.dismiss())
    row(page, "batch").locator("button:text-is('Pause')").click()
    assert page.url.endswith("/queues") and not paused(admin, "batch")

    page.once("dialog", lambda dialog: dialog.accept())
    row(page, "batch").locator("button:text-is('Pause')").click()
    page.wait_for_url("**/queues?sent=pause&queue=batch")
    assert "Queue batch paused" in page.locator(".notice").inner_text()
    assert paused(admin, "batch")
    batch = row(page, "batch")
    assert cells(batch)[1] == "paused" and "1 due, held while paused" in cells(batch)[8]
    page.set_viewport_size({"width": 1280, "height": 560})
    page.screenshot(path=screenshots / "console-queues.png", full_page=True)

    # The instance waiting in it says why.
    page.goto(f"{serving.base}/instances/invoice-31")
    waits = page.locator("dt:text-is('Waits')").locator("xpath=following-sibling::dd[1]")
    assert waits.inner_text() == "queue batch is paused"

    page.goto(f"{serving.base}/queues")
    page.once("dialog", lambda dialog: dialog.accept())
    row(page, "batch").locator("button:text-is('Resume')").click()
    page.wait_for_url("**/queues?sent=resume&queue=batch")
    assert cells(row(page, "batch"))[1] == "active" and not paused(admin, "batch")

    # Without JavaScript, the server's confirmation page asks.
    plain, plain_page = log_in(browser, serving.base, java_script_enabled=False)
    plain_page.goto(f"{serving.base}/queues")
    row(plain_page, "mail").locator("button:text-is('Pause')").click()
    assert plain_page.locator("h1").inner_text() == "Pause queue mail?"
    assert not paused(admin, "mail")
    plain_page.click("text=Yes, pause queue mail")
    plain_page.wait_for_url("**/queues?sent=pause&queue=mail")
    assert paused(admin, "mail")
    row(plain_page, "mail").locator("button:text-is('Resume')").click()
    plain_page.click("text=Yes, resume queue mail")
    plain_page.wait_for_url("**/queues?sent=resume&queue=mail")
    assert not paused(admin, "mail")
    plain.close()
    context.close()


def test_an_operator_reads_pauses_and_triggers_schedules(browser, site, screenshots):
    serving, admin = site
    context, page = logged_in_on(browser, serving, "Schedules")
    nightly = cells(schedule_row(page, "nightly-report"))
    assert nightly[0].startswith("nightly-report") and nightly[1] == "active"
    assert nightly[2].startswith("cron 0 3 * * * in Europe/Paris")
    assert nightly[3].startswith("2099-01-01 00:00:00.000Z")
    assert "21 h ago" in nightly[4]
    assert nightly[5:8] == ["invoice-31", "12", "2"]
    sync = cells(schedule_row(page, "sync-every-5"))
    assert sync[2].startswith("every 5 min") and sync[4:8] == ["-", "-", "0", "0"]

    # Pause one, with the page's dialog.
    page.once("dialog", lambda dialog: dialog.accept())
    schedule_row(page, "sync-every-5").locator("button:text-is('Pause')").click()
    page.wait_for_url("**/schedules?sent=pause&schedule=sync-every-5")
    assert cells(schedule_row(page, "sync-every-5"))[1] == "paused"
    assert next(s for s in admin.list_schedules() if s.name == "sync-every-5").paused

    # Trigger one: the notice links the instance it started, which waits in its queue.
    page.once("dialog", lambda dialog: dialog.accept())
    schedule_row(page, "nightly-report").locator("button:text-is('Trigger')").click()
    page.wait_for_url("**/schedules?sent=trigger*")
    notice = page.locator(".notice")
    assert "Schedule nightly-report triggered" in notice.inner_text()
    started = notice.locator("a").inner_text()
    assert started.startswith("nightly-report@")
    assert cells(schedule_row(page, "nightly-report"))[5:7] == [started, "13"]
    page.set_viewport_size({"width": 1280, "height": 480})
    page.screenshot(path=screenshots / "console-schedules.png", full_page=True)
    notice.locator("a").click()
    page.wait_for_url("**/instances/nightly-report*")
    assert page.locator("h1").inner_text().startswith(started)

    def fact(name: str) -> str:
        return page.locator(f"dt:text-is('{name}')").locator("xpath=following-sibling::dd[1]")

    assert fact("Queue").inner_text() == "batch"
    assert fact("Priority").inner_text() == "0"
    assert fact("Waits").inner_text().startswith("due: waiting for a launcher")
    context.close()


def test_the_read_token_sees_queues_and_schedules_without_buttons(browser, site):
    serving, _ = site
    context, page = log_in(browser, serving.base, READ_TOKEN)
    for place in ("Queues", "Schedules"):
        page.click(f"header nav >> text={place}")
        page.wait_for_url(f"**/{place.lower()}")
        assert page.locator("tbody tr").count() >= 2
        assert page.locator("tbody button").count() == 0
        assert "This session may only read" in page.locator("main").inner_text()
    context.close()
