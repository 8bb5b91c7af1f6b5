"""Running the tools as another, unprivileged local user (``nobody``): what any
user of the machine can do to a server they do not own. Needs root."""

from __future__ import annotations

import importlib
import os
import pwd
import sys
import traceback
from pathlib import Path

import pytest

ROOT_REQUIRED = os.environ.get("RUNTARA_TEST_REQUIRE_ROOT") == "1"

# Everything the tools may import, loaded before the user changes: this
# interpreter's own files need not be readable by that user.
_PRELOADED = (
    "runtara.cli",
    "runtara.cli.launching",
    "runtara.cli.inspect",
    "runtara.cli.signals",
    "runtara.admin.local",
    "runtara.admin.remote",
    "runtara.storage.selection",
    "runtara.drivers.sqlite",
    "runtara.drivers.postgres",
    "ctypes.util",
    "importlib.readers",
    "concurrent.futures.thread",
    "sqlite3",
    "json",
    "encodings.idna",
)


def require_root(why: str) -> None:
    """Skip the test unless it runs as root; RUNTARA_TEST_REQUIRE_ROOT=1 (set by CI)
    makes that a failure."""
    if os.geteuid() == 0:
        return
    if ROOT_REQUIRED:
        pytest.fail(f"{why} needs root, and RUNTARA_TEST_REQUIRE_ROOT=1")
    pytest.skip(f"{why} needs root")


def run_cli_as_nobody(*args: str, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """``runtara-core args`` run by ``nobody`` in a forked copy of this process;
    its exit code and what it wrote (stdout and stderr together)."""
    nobody = pwd.getpwnam("nobody")
    for name in _PRELOADED:
        importlib.import_module(name)
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child never returns
        code = 99
        try:
            os.close(reading)
            os.dup2(writing, 1)
            os.dup2(writing, 2)
            sys.stdout = sys.stderr = open(writing, "w", buffering=1, closefd=False)  # noqa: SIM115
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            os.environ.update(env, HOME="/nonexistent")
            os.chdir(cwd)
            from runtara import cli

            code = cli.main(list(args))
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            os._exit(code)
    os.close(writing)
    with open(reading, "rb") as said:
        output = said.read().decode(errors="replace")
    _, status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(status), output
