"""Acting on many instances from the console's list in a real browser: tick some
failed instances and retry them through the confirmation page that states their
count, then retry all those matching the filter; with the read token the list
offers no ticks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from runtara import records
from runtara.config import StorageConfig
from runtara.storage import selection
from tests.browser.serving import READ_TOKEN, HttpServing
from tests.browser.test_console import log_in
from tests.support import run_cli, wait_for

WORKFLOWS = Path(__file__).parent.parent / "workflows"
Status = records.InstanceStatus
FAILED = [f"order-{n}" for n in range(5)]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A server with a launcher and five failed instances, whose cause is gone since."""
    folder = tmp_path_factory.mktemp("console-bulk")
    serving = HttpServing(folder, "--runs-dir", str(folder / "runs"))
    storage = selection.open_driver(StorageConfig(database_url=serving.url), workers=1)
    broken = folder / "BROKEN"
    broken.touch()
    for instance_id in FAILED:
        started = run_cli(
            "start",
            "--database-url",
            serving.url,
            "--id",
            instance_id,
            f"--env=BROKEN={broken}",
            "--",
            sys.executable,
            str(WORKFLOWS / "broken.py"),
            cwd=folder,
        )
        assert started.returncode == 0, started.stderr
    for instance_id in FAILED:
        wait_for(lambda i=instance_id: status(storage, i) is Status.FAILED, 60)
        # and its launcher saw the process end: a retry is refused until then
        wait_for(lambda i=instance_id: released(storage, i), 30)
    broken.unlink()
    yield serving, storage
    storage.close()
    assert serving.stop() == 0


def status(storage, instance_id: str) -> Status:
    return storage.run(lambda tx: tx.get_instance(instance_id), write=False).status


def released(storage, instance_id: str) -> bool:
    launch = storage.run(lambda tx: tx.get_launch(instance_id), write=False)
    return launch.claimed_by is None


def retried(storage, instance_id: str) -> int:
    events = storage.run(lambda tx: tx.list_events(instance_id, limit=1000), write=False)
    return sum(event.event_type is records.EventType.RETRIED for event in events)


def test_ticked_instances_and_then_all_matching_are_retried_after_a_count(
    site, browser, screenshots
):
    serving, storage = site
    context, page = log_in(browser, serving.base)
    page.goto(f"{serving.base}/instances?status=failed")
    assert sorted(page.locator("tbody td.id a").all_inner_texts()) == FAILED
    page.check("input[aria-label='select order-1']")
    page.check("input[aria-label='select order-3']")
    page.click("button:text-is('Retry selected')")
    assert page.locator("h1").inner_text() == "Retry 2 instances?"
    assert "order-1" in page.content() and "order-3" in page.content()
    page.screenshot(path=str(screenshots / "console-bulk-confirm.png"), full_page=True)
    page.click("button:text-is('Yes, retry 2 instances')")
    page.wait_for_url("**/instances?status=failed**")
    assert page.locator(".notice").inner_text() == "Retried 2 instances."
    for instance_id in ("order-1", "order-3"):
        wait_for(lambda i=instance_id: status(storage, i) is Status.COMPLETED, 60)
    assert {i: status(storage, i) for i in ("order-0", "order-2", "order-4")} == dict.fromkeys(
        ("order-0", "order-2", "order-4"), Status.FAILED
    )

    page.goto(f"{serving.base}/instances?status=failed")
    page.check("input[name=matching]")
    page.click("button:text-is('Retry selected')")
    assert page.locator("h1").inner_text() == "Retry 3 instances?"
    page.click("button:text-is('Yes, retry 3 instances')")
    page.wait_for_url("**/instances?status=failed**")
    assert page.locator(".notice").inner_text() == "Retried 3 instances."
    for instance_id in FAILED:
        wait_for(lambda i=instance_id: status(storage, i) is Status.COMPLETED, 60)
        assert retried(storage, instance_id) == 1
    context.close()


def test_the_read_token_gets_no_ticks_and_cannot_post(site, browser):
    serving, _ = site
    context, page = log_in(browser, serving.base, READ_TOKEN)
    assert page.locator("tbody td.id a").count() == len(FAILED)
    assert page.locator("input[type=checkbox]").count() == 0
    assert page.locator("button:text-is('Retry selected')").count() == 0
    context.close()
    fields = {"action": "retry", "pick.1": "order-0", "confirmed": "yes"}
    assert serving.post("/instances", fields, **serving.bearer("read")).status == 403
