from __future__ import annotations

from tests.examples.conftest import lines, wait_while_running


def items(*numbers: int) -> list[str]:
    return [f"item {number}" for number in numbers]


def signalled_after_three_items(deployment, tmp_path, count: int, signal: str):
    """batch-1, a batch of ``count`` items, is sent ``signal`` once three are done;
    returns its process, its output file and its environment."""
    output = tmp_path / "output.txt"
    env = {"BATCH_ITEMS": str(count), "BATCH_ITEM_SECONDS": "0.1", "BATCH_OUTPUT": str(output)}
    process = deployment.start("batch_job", "batch-1", tmp_path / "first.out", **env)
    wait_while_running(process, lambda: len(lines(output)) >= 3)
    deployment.cli("signal", "batch-1", signal)
    return process, output, env


def test_cancel_stops_the_batch_after_the_item_in_progress(deployment, tmp_path):
    process, output, _ = signalled_after_three_items(deployment, tmp_path, 100, "cancel")
    done_when_sent = len(lines(output))
    assert process.wait(30) == 0
    done = len(lines(output))
    # the cancel is seen when the item in progress is saved, and nothing starts after it
    assert done_when_sent <= done <= done_when_sent + 1
    assert lines(output) == items(*range(1, done + 1))
    assert deployment.status("batch-1") == "cancelled"


def test_pause_suspends_the_batch_and_a_resumed_run_finishes_it(deployment, tmp_path):
    # Enough items that the pause arrives before the last (the signal is sent by a
    # command that a busy machine may take a second or two to start).
    count = 40
    first, output, env = signalled_after_three_items(deployment, tmp_path, count, "pause")
    assert first.wait(30) == 0
    assert deployment.status("batch-1") == "suspended"
    paused_at = len(lines(output))
    assert 3 <= paused_at < count
    assert lines(output) == items(*range(1, paused_at + 1))

    deployment.cli("signal", "batch-1", "resume")
    second = tmp_path / "second.out"
    assert deployment.run("batch_job", "batch-1", second, **env) == 0
    assert deployment.status("batch-1") == "completed"
    assert deployment.output("batch-1") == {"items": count, "sum_of_squares": 22140}
    # every item processed exactly once: the second run went on where the first stopped
    assert lines(output) == items(*range(1, count + 1))
    assert lines(second) == [
        f"item {number} of {count} done" for number in range(paused_at + 1, count + 1)
    ]


def test_the_output_goes_to_the_examples_output_folder(deployment, tmp_path):
    env = {"BATCH_ITEMS": "2", "BATCH_ITEM_SECONDS": "0"}
    assert deployment.run("batch_job", "batch-1", tmp_path / "run.out", **env) == 0
    assert lines(deployment.output_dir / "batch-output.txt") == items(1, 2)
    assert not (tmp_path / "batch-output.txt").exists()  # nothing in the working directory
