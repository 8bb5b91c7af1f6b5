"""A workflow that starts children and waits for them, or is one of those children.

Its input says which: {"role": "parent"} starts three children (values 1, 2,
3), kills itself once with SIGKILL after starting them (the file KILL_FLAG
says it did), waits for them and returns the sum of their outputs;
{"role": "holder"} starts a child that is stopped with it and one that is
abandoned, both "sleeper"s, and waits for the first; {"role": "child"}
records that it ran in EFFECTS, waits a little and returns its value times
ten; {"role": "sleeper"} runs until it is cancelled.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from runtara import sdk


def workflow(instance: sdk.Instance):
    given = instance.input
    role = given["role"]
    me = instance.instance_id
    if role == "parent":
        ids = [
            instance.start_child(f"{me}-c{value}", input={"role": "child", "value": value})
            for value in (1, 2, 3)
        ]
        flag = Path(os.environ["KILL_FLAG"])
        if not flag.exists():
            flag.write_text("killed once\n")
            os.kill(os.getpid(), signal.SIGKILL)
        return sum(instance.wait_children(ids))
    if role == "holder":
        instance.start_child(f"{me}-stopped", input={"role": "sleeper"})
        instance.start_child(
            f"{me}-abandoned", input={"role": "sleeper"}, on_parent_cancel="abandon"
        )
        return instance.wait_child(f"{me}-stopped")
    if role == "child":
        with open(os.environ["EFFECTS"], "a") as effects:
            effects.write(f"{me}\n")
        time.sleep(1.5)
        return given["value"] * 10
    while True:  # a sleeper: until cancelled
        instance.poll_signals(force=True)
        time.sleep(0.2)


if __name__ == "__main__":
    sdk.main(workflow)
