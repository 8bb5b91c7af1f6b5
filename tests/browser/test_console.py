"""The web console in a real browser, on a real server with a launcher and real
instance processes: log in, filter the list, open an instance, see its
timeline, checkpoints and logs, pause and resume it with the page's dialog,
and send a custom signal through the confirmation page (without JavaScript);
look without acting with the read token; log out; and do it all through an
HTTPS proxy."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import pytest

from runtara import records
from runtara.config import StorageConfig
from runtara.storage import selection
from tests.browser.serving import OPERATE_TOKEN, READ_TOKEN, HttpServing
from tests.browser.tls_proxy import TlsProxy
from tests.support import RpcClient, run_cli, wait_for

HERE = Path(__file__).parent
WORKFLOWS = HERE.parent / "workflows"
EXAMPLES = HERE.parents[1] / "examples"
FAST = ("--restart-backoff", "50ms", "--restart-backoff-max", "200ms")
VIEWPORT = {"width": 1280, "height": 860}


class Site:
    """The server under test, its storage, and the instances it was given."""

    def __init__(self, folder: Path) -> None:
        self.serving = HttpServing(folder, "--runs-dir", str(folder / "runs"), *FAST)
        self.storage = selection.open_driver(
            StorageConfig(database_url=self.serving.url), workers=1
        )

    def start(self, instance_id: str, tenant: str, script: Path, *flags: str) -> None:
        """Start ``script`` as ``python NAME`` in its folder (what the console shows),
        the virtual environment's Python found through PATH."""
        path = f"PATH={Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
        started = run_cli(
            "start",
            "--database-url",
            self.serving.url,
            "--id",
            instance_id,
            "--tenant",
            tenant,
            "--cwd",
            str(script.parent),
            "--env",
            path,
            *flags,
            "--",
            "python",
            script.name,
            cwd=self.serving.folder,
        )
        assert started.returncode == 0, started.stderr

    def instance(self, instance_id: str) -> records.Instance:
        return self.storage.run(lambda tx: tx.get_instance(instance_id), write=False)

    def settled(self, instance_id: str, status: records.InstanceStatus) -> None:
        wait_for(lambda: self.instance(instance_id).status is status, 60)

    def close(self) -> None:
        self.storage.close()
        assert self.serving.stop() == 0


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A server holding an instance of each end: completed, failed (its attempts
    spent), cancelled, and one sleeping for a day."""
    running = Site(tmp_path_factory.mktemp("console"))
    running.start("invoice-2", "acme", WORKFLOWS / "echo_input.py", "--input", '{"amount": 12}')
    running.start(
        "report-9", "globex", WORKFLOWS / "kill_loop.py", "--max-attempts", "2", "--env=EFFECTS=-"
    )  # no KILLS_FILE: each attempt fails at once, the second one for good
    running.start("trial-1", "globex", EXAMPLES / "long_sleep.py", "--env=SLEEP_SECONDS=86400")
    running.start("batch-4", "acme", HERE / "approval_workflow.py")
    running.settled("batch-4", records.InstanceStatus.RUNNING)
    cancel = run_cli("signal", "batch-4", "cancel", "--database-url", running.serving.url, cwd=HERE)
    assert cancel.returncode == 0, cancel.stderr
    running.settled("invoice-2", records.InstanceStatus.COMPLETED)
    running.settled("report-9", records.InstanceStatus.FAILED)
    running.settled("trial-1", records.InstanceStatus.SUSPENDED)
    running.settled("batch-4", records.InstanceStatus.CANCELLED)
    yield running
    running.close()


def log_in(browser, base: str, token: str = OPERATE_TOKEN, **options):
    """A browser context holding a console session (the login form, filled with ``token``)."""
    context = browser.new_context(viewport=VIEWPORT, **options)
    page = context.new_page()
    refused = page.goto(f"{base}/instances")
    assert refused.status == 401
    page.fill("input[name=token]", token)
    page.click("button:text-is('Log in')")
    page.wait_for_url("**/instances")
    assert page.locator("h1").inner_text() == "Instances"
    return context, page


def rows(page) -> list[str]:
    return page.locator("tbody td.id a").all_inner_texts()


def until(page, condition, timeout: float = 60.0) -> None:
    """Reload ``page`` until ``condition(page)`` holds (the page would also refresh
    itself, every 5 s)."""
    deadline = time.monotonic() + timeout
    while not condition(page):
        assert time.monotonic() < deadline, f"condition not met on {page.url}"
        page.reload()


def status_of(page) -> str:
    return page.locator("h1 .badge").inner_text()


def test_without_the_token_the_console_asks_for_it(browser, site):
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    refused = page.goto(f"{site.serving.base}/instances/invoice-2")
    assert refused.status == 401
    assert page.locator("h1").inner_text() == "Log in"
    page.fill("input[name=token]", "wrong")
    page.click("button:text-is('Log in')")
    assert "That is not a token of this server" in page.locator(".notice").inner_text()
    page.fill("input[name=token]", OPERATE_TOKEN)
    page.click("button:text-is('Log in')")
    page.wait_for_url("**/instances/invoice-2")
    assert status_of(page) == "completed"
    context.close()


def test_the_list_filters_by_status_and_tenant_and_finds_an_id(browser, site):
    context, page = log_in(browser, site.serving.base)
    assert {"invoice-2", "report-9"} <= set(rows(page))
    page.select_option("select[name=status]", "failed")
    page.click("text=Show")
    assert rows(page) == ["report-9"]
    page.select_option("select[name=status]", "")
    page.fill("input[name=tenant]", "acme")
    page.click("text=Show")
    assert "report-9" not in rows(page) and "invoice-2" in rows(page)
    page.fill("input[name=id]", "invoice-2")
    page.click("text=Show")
    page.wait_for_url("**/instances/invoice-2")
    assert '{"got": {"amount": 12}}' in page.locator("pre.block").first.inner_text()
    context.close()


def test_an_operator_watches_pauses_resumes_and_signals_an_instance(browser, site, screenshots):
    site.start("order-17", "acme", HERE / "approval_workflow.py")
    context, page = log_in(browser, site.serving.base)
    base = site.serving.base

    # The list: the new instance runs, and the page refreshes itself meanwhile.
    until(page, lambda p: "order-17" in rows(p))
    assert page.locator("meta[http-equiv=refresh]").count() == 1
    page.click("text=order-17")
    page.wait_for_url("**/instances/order-17")
    until(
        page, lambda p: "waiting for the custom signal" in p.locator("pre.block").last.inner_text()
    )
    assert status_of(page) == "running"
    timeline = page.locator("table").first.inner_text()
    assert "launched" in timeline and "started" in timeline
    checkpoints = page.locator("table").nth(1)
    assert checkpoints.locator("tbody tr").count() == 3
    assert "durable::step::3" in checkpoints.inner_text()
    with page.expect_download() as download:
        checkpoints.locator("text=download").first.click()
    saved = site.storage.run(
        lambda tx: tx.get_checkpoint("order-17", "durable::step::3"), write=False
    )
    assert Path(download.value.path()).read_bytes() == saved.state
    page.goto(f"{base}/instances")
    page.set_viewport_size({"width": 1280, "height": 480})
    page.screenshot(path=screenshots / "console-instances.png", full_page=True)
    page.set_viewport_size(VIEWPORT)

    # Pause, confirmed in the page's dialog: the instance acknowledges and suspends.
    page.goto(f"{base}/instances/order-17")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button:text-is('Pause')")
    page.wait_for_url("**/instances/order-17?sent=pause")
    assert "Pause sent" in page.locator(".notice").inner_text()
    until(page, lambda p: status_of(p) == "suspended")

    # Resume: the launcher runs it again, and it waits for its signal again.
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button:text-is('Resume')")
    page.wait_for_url("**/instances/order-17?sent=resume")
    until(
        page,
        lambda p: (
            status_of(p) == "running"
            and p.locator("dt:text-is('Launches')")
            .locator("xpath=following-sibling::dd[1]")
            .inner_text()
            == "2"
        ),
    )
    assert "suspended" in page.locator("table").first.inner_text()
    page.goto(f"{base}/instances/order-17")
    assert page.locator("text=Command").locator("xpath=following-sibling::dd[1]").inner_text() == (
        "python approval_workflow.py"
    )
    page.screenshot(path=screenshots / "console-instance.png", full_page=True)

    # A custom signal without JavaScript: the server's confirmation page asks.
    plain, plain_page = log_in(browser, site.serving.base, java_script_enabled=False)
    plain_page.goto(f"{base}/instances/order-17")
    plain_page.fill("input[name=checkpoint_id]", "approve")
    plain_page.fill("input[name=payload]", "approved")
    plain_page.click("text=Send custom signal")
    question = plain_page.locator("h1").inner_text()
    assert question == "Send a custom signal for checkpoint 'approve' to order-17?"
    plain_page.screenshot(path=screenshots / "console-confirm.png", full_page=True)
    plain_page.click("text=Yes, send the custom signal")
    plain_page.wait_for_url("**/instances/order-17?sent=signal*")
    until(plain_page, lambda p: status_of(p) == "completed")
    assert json.loads(plain_page.locator("pre.block").first.inner_text()) == {
        "decision": "approved"
    }
    assert plain_page.locator("meta[http-equiv=refresh]").count() == 0
    assert plain_page.locator("text=Send custom signal").count() == 0  # no actions when finished
    plain_page.screenshot(path=screenshots / "console-completed.png", full_page=True)
    plain.close()
    context.close()


def test_the_read_token_looks_without_acting_and_logging_out_ends_the_session(browser, site):
    base = site.serving.base
    context, page = log_in(browser, base, READ_TOKEN)
    complaints = []  # what the browser refuses to load or run (the CSP, for one)
    page.on("console", lambda message: message.type == "error" and complaints.append(message))
    assert page.locator("header .who").inner_text() == "read only"
    page.goto(f"{base}/instances/trial-1")
    assert page.locator("header").evaluate("e => getComputedStyle(e).display") == "flex"
    assert complaints == []
    assert status_of(page) == "suspended"
    assert page.locator("button:text-is('Pause')").count() == 0
    assert "This session may only read" in page.locator("main").inner_text()
    # A form posted anyway, with the session's cookie, is refused.
    refused = context.request.post(
        f"{base}/instances/trial-1/cancel",
        form={"confirmed": "yes"},
        headers={"Origin": base},
    )
    assert refused.status == 403
    assert site.instance("trial-1").status is records.InstanceStatus.SUSPENDED
    page.click("button:text-is('Log out')")
    page.wait_for_url("**/login")
    assert context.cookies() == []
    assert page.goto(f"{base}/instances/trial-1").status == 401
    assert page.locator("h1").inner_text() == "Log in"
    context.close()


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    """A server whose console is reached through an HTTPS proxy (--public-url), with
    an instance waiting."""
    folder = tmp_path_factory.mktemp("proxied")
    proxy = TlsProxy(folder)
    public_url = f"https://localhost:{proxy.port}"
    serving = HttpServing(folder, "--no-launcher", "--public-url", public_url)
    proxy.start(("127.0.0.1", serving.port))
    client = RpcClient(serving.server.address)
    assert client.register("remote-7").success
    client.close()
    yield public_url, serving
    proxy.stop()
    assert serving.stop() == 0


def test_through_an_https_proxy_an_operator_logs_in_and_acts(browser, proxied):
    public_url, serving = proxied
    context, page = log_in(browser, public_url, ignore_https_errors=True)
    (cookie,) = context.cookies()
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    page.goto(f"{public_url}/instances/remote-7")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button:text-is('Pause')")
    page.wait_for_url("**/instances/remote-7?sent=pause")
    assert "Pause sent" in page.locator(".notice").inner_text()
    storage = selection.open_driver(StorageConfig(database_url=serving.url), workers=1)
    try:
        pending = storage.run(lambda tx: tx.get_pending_signal("remote-7"), write=False)
    finally:
        storage.close()
    assert pending.signal_type is records.SignalType.PAUSE
    context.close()


def test_the_list_pages_older_and_newer_by_cursor(browser, site):
    # last of the tests on this site: its first page is these instances from now on
    created = dt.datetime.now(dt.timezone.utc)
    names = [f"paged-{number:03d}" for number in range(120)]
    site.storage.run(
        lambda tx: [
            tx.create_instance(name, "paged", created + dt.timedelta(milliseconds=number))
            for number, name in enumerate(names)
        ]
    )
    newest_first = names[::-1]
    context, page = log_in(browser, site.serving.base)
    page.goto(f"{site.serving.base}/instances?tenant=paged")
    assert rows(page) == newest_first[:50]
    pager = page.locator("div.pager")
    assert "50 shown of 120, newest first" in pager.inner_text()
    assert pager.locator("a").all_inner_texts() == ["older →"]
    pager.locator("a:has-text('older')").click()
    assert rows(page) == newest_first[50:100]
    assert "after=" in page.url and "tenant=paged" in page.url
    pager.locator("a:has-text('older')").click()
    assert rows(page) == newest_first[100:]
    assert pager.locator("a").all_inner_texts() == ["« newest", "← newer"]
    pager.locator("a:has-text('newer')").click()
    assert rows(page) == newest_first[50:100]
    pager.locator("a:has-text('newest')").click()
    assert rows(page) == newest_first[:50]
    context.close()
