"""The console's Fork button in a real browser: fork a failed instance from its
latest checkpoint, land on the new instance's page, which names its origin with
a link back; the read token is offered no Fork."""

from __future__ import annotations

import re

import pytest

from runtara import records
from tests.browser.serving import READ_TOKEN
from tests.browser.test_console import WORKFLOWS, Site, log_in, status_of, until


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A server holding one instance that failed at its fifth step."""
    running = Site(tmp_path_factory.mktemp("console-fork"))
    effects = running.serving.folder / "effects.txt"
    running.start("orig", "acme", WORKFLOWS / "fixable.py", f"--env=EFFECTS={effects}")
    running.settled("orig", records.InstanceStatus.FAILED)
    running.effects = effects
    yield running
    running.close()


def fact(page, name: str):
    return page.locator(f"dt:text-is('{name}')").locator("xpath=following-sibling::dd[1]")


def test_an_operator_forks_a_failed_instance_from_its_latest_checkpoint(browser, site, screenshots):
    context, page = log_in(browser, site.serving.base)
    base = site.serving.base
    page.goto(f"{base}/instances/orig")
    assert status_of(page) == "failed"
    assert page.locator("dt:text-is('Forked from')").count() == 0
    button = page.locator("button:text-is('Fork from checkpoint durable::step::4')")
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    button.click()
    page.wait_for_url(re.compile(r".*/instances/orig-fork-[0-9a-f]{8}\?sent=fork$"))
    assert asked == ["Fork orig: run a new instance again from its checkpoint durable::step::4?"]
    new_id = page.url.split("/instances/")[1].split("?")[0]
    assert "Forked" in page.locator(".notice").inner_text()
    assert fact(page, "Forked from").inner_text() == "orig at durable::step::4"
    # the fork has no fix: it runs step 5 again (only), and fails there again
    until(page, lambda p: status_of(p) == "failed")
    lines = site.effects.read_text().splitlines()
    assert lines[5:] == [f"{new_id} step 5"]
    page.screenshot(path=screenshots / "console-fork.png", full_page=True)
    page.locator("dd.forked-from a").click()
    page.wait_for_url("**/instances/orig")
    assert status_of(page) == "failed"
    context.close()


def test_the_read_token_is_offered_no_fork(browser, site):
    context, page = log_in(browser, site.serving.base, READ_TOKEN)
    page.goto(f"{site.serving.base}/instances/orig")
    assert page.locator("text=Fork from checkpoint").count() == 0
    assert "actions need the operate token" in page.inner_text("main")
    context.close()


def test_without_javascript_the_server_asks_and_the_checkpoint_can_be_chosen(browser, site):
    context, page = log_in(browser, site.serving.base, java_script_enabled=False)
    page.goto(f"{site.serving.base}/instances/orig")
    page.click("button:text-is('Fork from checkpoint durable::step::4')")
    assert page.locator("h1").inner_text() == "Fork orig from checkpoint 'durable::step::4'?"
    page.fill("input[name=checkpoint_id]", "durable::step::2")
    page.click("text=Yes, fork orig")
    page.wait_for_url(re.compile(r".*/instances/orig-fork-[0-9a-f]{8}\?sent=fork$"))
    assert fact(page, "Forked from").inner_text() == "orig at durable::step::2"
    new_id = page.url.split("/instances/")[1].split("?")[0]
    copied = site.storage.run(lambda tx: tx.list_checkpoints(new_id), write=False)
    assert [c.checkpoint_id for c in copied][-2:] == ["durable::step::2", "durable::step::1"]
    context.close()
