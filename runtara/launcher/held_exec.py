"""The first program of an instance process started into a cgroup of its own.

It runs as ``python -I -S held_exec.py GO STATUS COMMAND...``: it waits until the
launcher writes one byte to the pipe GO (the launcher has moved it into the
attempt's group by then), then replaces itself with COMMAND, keeping its pid. So
the command, and everything it ever starts, runs inside the group from its first
instruction. When the command cannot be run, the errno goes to the pipe STATUS,
which a successful exec closes empty. Without the byte (the launcher gave up)
it exits without running anything.

It imports nothing of runtara: it must start fast, before the command.
"""

from __future__ import annotations

import os
import signal
import sys

NOT_RELEASED = 125
"""The exit code when the launcher closed GO without writing."""


def main(arguments: list[str]) -> None:
    go, status = int(arguments[0]), int(arguments[1])
    command = arguments[2:]
    released = os.read(go, 1)
    os.close(go)
    if not released:
        os._exit(NOT_RELEASED)
    os.set_inheritable(status, False)
    # Python ignores these at start-up, and an ignored signal stays ignored across
    # exec: the command gets the defaults, as subprocess gives them.
    for name in ("SIGPIPE", "SIGXFSZ"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    try:
        os.execvp(command[0], command)
    except OSError as error:
        os.write(status, str(error.errno or 0).encode())
        os._exit(127)


if __name__ == "__main__":
    main(sys.argv[1:])
