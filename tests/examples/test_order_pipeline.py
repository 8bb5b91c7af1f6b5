from __future__ import annotations

import json
import os
import signal
import sys

from tests.examples.conftest import EXAMPLES, lines, time_of, wait_while_running
from tests.support import wait_for

STEPS = ["reserve-stock", "charge-card", "ship", "send-email"]
FUNCTIONS = {
    "reserve-stock": "reserve_stock",
    "charge-card": "charge_card",
    "ship": "ship",
    "send-email": "send_email",
}
OUTPUT = {
    "order": "order-1",
    "reservation": "R-order-1",
    "payment": "P-order-1",
    "tracking": "T-R-order-1",
    "email": "your order order-1 is on its way: T-R-order-1",
}


def started(stdout) -> list[str]:
    """The steps one start of the script ran, in order (it prints ``<step> <order>: started``)."""
    return [line.split()[0] for line in lines(stdout)]


def test_the_pipeline_runs_every_step_once(deployment, tmp_path):
    log = deployment.output_dir / "orders.log"
    stdout = tmp_path / "run.out"
    assert deployment.run("order_pipeline", "order-1", stdout, ORDER_STEP_SECONDS="0") == 0
    assert started(stdout) == STEPS
    assert lines(log) == [f"{step} order-1" for step in STEPS]  # ORDER_LOG's default
    assert not (tmp_path / "orders.log").exists()  # nothing in the working directory
    assert deployment.status("order-1") == "completed"
    assert deployment.output("order-1") == OUTPUT


def test_killed_at_many_points_the_pipeline_finishes_with_every_step_done_once(
    deployment, tmp_path
):
    log = tmp_path / "effects.log"
    env = {"ORDER_LOG": str(log), "ORDER_STEP_SECONDS": "0.4"}

    def killed_run(number: int, recorded: int) -> list[str]:
        """Start the script and kill it once it has started a step and the log holds
        ``recorded`` lines; the steps it started."""
        stdout = tmp_path / f"run-{number}.out"
        process = deployment.start("order_pipeline", "order-1", stdout, **env)
        wait_while_running(process, lambda: bool(started(stdout)) and len(lines(log)) >= recorded)
        process.kill()
        assert process.wait(10) == -signal.SIGKILL
        return started(stdout)

    # A step's effect happens half way through it: the kills land in the first step
    # before its effect, then in each of the first three steps after its effect (its
    # result not saved yet), or a little further on if they come late.
    runs = [killed_run(number, recorded) for number, recorded in enumerate([0, 1, 2, 3])]
    stdout = tmp_path / "run-last.out"
    assert deployment.run("order_pipeline", "order-1", stdout, **env) == 0
    runs.append(started(stdout))

    # Every effect happened exactly once, in order, and the order completed.
    assert lines(log) == [f"{step} order-1" for step in STEPS]
    assert deployment.status("order-1") == "completed"
    assert deployment.output("order-1") == OUTPUT

    # Each start ran steps in order, beginning with the step in flight when the
    # previous one was killed (or the next one, had its result been saved).
    in_flight = None
    for steps in runs:
        first = STEPS.index(steps[0])
        assert first in ((0,) if in_flight is None else (in_flight, in_flight + 1)), runs
        assert steps == STEPS[first : first + len(steps)], runs
        in_flight = STEPS.index(steps[-1])
    assert runs[-1][-1] == "send-email"

    # No step whose result was saved ran again: a step run by a start of the script
    # was saved (once, ever) after that start registered.
    registered = [
        time_of(row["created_at"])
        for row in deployment.query(
            "SELECT created_at FROM instance_events "
            "WHERE instance_id = 'order-1' AND event_type = 'started' ORDER BY id"
        )
    ]
    saved = {
        row["checkpoint_id"]: time_of(row["created_at"])
        for row in deployment.query(
            "SELECT checkpoint_id, created_at FROM checkpoints WHERE instance_id = 'order-1'"
        )
    }
    assert sorted(saved) == sorted(f"durable::{name}::order-1" for name in FUNCTIONS.values())
    for start, steps in zip(registered, runs, strict=True):
        for step in steps:
            assert saved[f"durable::{FUNCTIONS[step]}::order-1"] > start, (step, runs)


def test_started_by_the_server_and_killed_it_is_relaunched_and_finishes(deployment, tmp_path):
    """The README's recipe: ``start``, ``kill -9`` of the process, and nothing else."""
    log = deployment.output_dir / "orders.log"
    deployment.cli(
        "start",
        "--id",
        "order-17",
        f"--env=EXAMPLES_OUTPUT_DIR={deployment.output_dir}",
        "--env=ORDER_STEP_SECONDS=0.4",
        "--",
        sys.executable,
        str(EXAMPLES / "order_pipeline.py"),
    )
    wait_for(lambda: len(lines(log)) >= 2, timeout=30)  # in the middle of the pipeline
    (launched,) = deployment.query(
        "SELECT payload FROM instance_events WHERE instance_id = 'order-17' "
        "AND event_type = 'launched'"
    )
    os.kill(json.loads(launched["payload"])["pid"], signal.SIGKILL)

    wait_for(lambda: deployment.status("order-17") == "completed", timeout=60)
    assert lines(log) == [
        "reserve-stock order-17",
        "charge-card order-17",
        "ship order-17",
        "send-email order-17",
    ]
    assert deployment.output("order-17") == {
        key: value.replace("order-1", "order-17") for key, value in OUTPUT.items()
    }
    exits = wait_for(
        lambda: (
            (
                rows := deployment.query(
                    "SELECT payload FROM instance_events WHERE instance_id = 'order-17' "
                    "AND event_type = 'exited' ORDER BY id"
                )
            )
            and len(rows) == 2
            and [json.loads(row["payload"]) for row in rows]
        )
    )
    assert [(facts["signal"], facts["code"]) for facts in exits] == [
        (signal.SIGKILL, None),
        (None, 0),
    ]
    stdout = deployment.cli("logs", "order-17", "--stream", "stdout")
    assert "reserve-stock order-17: started" in stdout and "send-email order-17: started" in stdout
