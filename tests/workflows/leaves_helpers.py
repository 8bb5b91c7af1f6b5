"""A workflow that starts long-running helper processes and never ends them.

HELPERS names which, comma-separated:
- ``group``: a child in the workflow's own process group;
- ``own-group``: a child in a process group of its own, in the same session;
- ``setsid``: a child in a session of its own (``setsid sleep``);
- ``daemon``: a grandchild in a session of its own whose parent has exited, so it
  belongs to init (``setsid sleep &`` from a shell).

Their pids go to the file PIDS, one "<kind> <pid>" a line, written whole. Then with
THEN=finish the workflow completes; with THEN=stay it saves the checkpoint
"started" and runs on, deaf to a cancel, until a signal ends it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import stubborn

from runtara import sdk

QUIET = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}


def start_helper(kind: str) -> int:
    if kind == "group":
        return subprocess.Popen(["sleep", "1000"], **QUIET).pid
    if kind == "own-group":
        return subprocess.Popen(["sleep", "1000"], process_group=0, **QUIET).pid
    if kind == "setsid":
        return subprocess.Popen(["setsid", "sleep", "1000"], **QUIET).pid
    if kind == "daemon":
        shell = "setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $!"
        return int(subprocess.run(["sh", "-c", shell], capture_output=True, check=True).stdout)
    raise ValueError(f"unknown helper {kind!r}")


def workflow(instance: sdk.Instance) -> int | None:
    kinds = os.environ["HELPERS"].split(",")
    lines = [f"{kind} {start_helper(kind)}\n" for kind in kinds]
    target = Path(os.environ["PIDS"])
    partial = target.with_suffix(".partial")
    partial.write_text("".join(lines))
    partial.rename(target)
    if os.environ["THEN"] == "finish":
        return len(lines)
    return stubborn.workflow(instance)


if __name__ == "__main__":
    sdk.main(workflow)
