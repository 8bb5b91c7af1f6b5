from __future__ import annotations

import pytest

from tests.examples.conftest import lines, wait_while_running

ENV = {"RUNTARA_SIGNAL_POLL_INTERVAL_MS": "50"}


def waiting(stdout) -> bool:
    return any("waiting for" in line for line in lines(stdout))


@pytest.mark.parametrize(
    ("decision", "outcome", "said"),
    [
        ("approved", {"order": "PO-purchase-1"}, "purchase-1: approved, order placed"),
        ("rejected", {"notified": True}, "purchase-1: rejected, requester notified"),
    ],
)
def test_the_workflow_acts_on_the_decision_sent_with_the_cli(
    deployment, tmp_path, decision, outcome, said
):
    stdout = tmp_path / "run.out"
    process = deployment.start("approval", "purchase-1", stdout, **ENV)
    wait_while_running(process, lambda: waiting(stdout))
    sent = deployment.cli("custom-signal", "purchase-1", "approve-purchase", "--payload", decision)
    assert sent == "custom signal for approve-purchase sent to purchase-1\n"
    assert process.wait(30) == 0
    assert deployment.status("purchase-1") == "completed"
    assert deployment.output("purchase-1") == {
        "request": "purchase-1",
        "decision": decision,
        **outcome,
    }
    assert lines(stdout)[-1] == said


def test_another_payload_is_ignored_and_the_wait_goes_on(deployment, tmp_path):
    stdout = tmp_path / "run.out"
    process = deployment.start("approval", "purchase-1", stdout, **ENV)
    wait_while_running(process, lambda: waiting(stdout))
    deployment.cli("custom-signal", "purchase-1", "approve-purchase", "--payload", "maybe")
    wait_while_running(process, lambda: "purchase-1: ignoring 'maybe'" in lines(stdout))
    assert deployment.status("purchase-1") == "running"
    deployment.cli("custom-signal", "purchase-1", "approve-purchase", "--payload", "approved")
    assert process.wait(30) == 0
    assert deployment.output("purchase-1")["decision"] == "approved"
