"""The README's first workflow works exactly as written, on a fresh checkout.

The checkout is a copy of the repository's files (those ``git`` tracks, and new
ones it does not ignore) with the virtual environment the tests run in as its
``.venv``, and the package's folders linked to those that environment's editable
installation imports: what the README's set-up command would have made,
without installing everything again. The README's own commands then run unchanged, parsed from it,
so that editing the README changes what is tested: the server as the set-up
command starts it, the recipe in a second shell, the command printing the
console's credential, and the console's page for the instance, as a browser
logged in with that credential would ask for it.

They run in a PID and network namespace of their own (``tests/docs/first_workflow.py``):
the README's fixed ports are free there whatever else runs, and its ``pkill -f``
reaches only the recipe's processes. The server there gets each attempt no cgroup
of its own (``RUNTARA_INSTANCE_CGROUPS=off``, its environment and not its
command): the launchers of other tests' servers sweep the groups of the shared
cgroup parent whose process they cannot see, and they cannot see into the
namespace.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs import pages

INSTALL = "python3 -m venv .venv && .venv/bin/pip install -e . && "


def first_workflow() -> dict:
    """The plan the README gives, from its set-up and its first workflow."""
    readme = pages.README.read_text()
    serve = pages.indented_blocks(pages.section(readme, "## Set-up: two commands"))[0]
    assert serve.startswith(INSTALL), serve
    recipe_section = pages.section(readme, "## A first workflow: crash it, watch it recover")
    recipe, token = pages.indented_blocks(recipe_section)
    (instance,) = set(re.findall(r"start --id (\S+)", recipe))
    (console,) = set(
        re.findall(rf"http://127\.0\.0\.1:8080/instances/{instance}\b", recipe_section)
    )
    return {
        "server": serve.removeprefix(INSTALL),
        "recipe": recipe,
        "token": token,
        "instance": instance,
        "console": console,
    }


def namespace_command() -> list[str] | None:
    """``unshare`` for a PID and network namespace of our own, or None when this
    machine or user cannot make one."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return None
    command = ["unshare", "--pid", "--fork", "--mount-proc", "--net"]
    if os.geteuid() != 0:
        command[1:1] = ["--user", "--map-root-user"]
    probe = subprocess.run([*command, "ip", "link", "set", "lo", "up"], capture_output=True)
    return command if probe.returncode == 0 else None


INSTALLED = ("runtara", "drivers", "sql")
"""The folders the editable installation in ``.venv`` imports from: linked, not
copied, so that every process imports one copy of the code, whichever folder
it starts in (``python -m runtara`` finds the package in its working folder)."""


def fresh_checkout(folder: Path) -> Path:
    folder.mkdir()
    for name in INSTALLED:
        (folder / name).symlink_to(pages.ROOT / name)
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=pages.ROOT,
        capture_output=True,
        check=True,
    )
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = pages.ROOT / name
        if name.split("/", 1)[0] in INSTALLED or not source.is_file():
            continue  # linked above; or deleted in the work tree, not yet in git
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
    (folder / ".venv").symlink_to(Path(sys.prefix))
    return folder


def test_the_tutorial_starts_with_the_readme_first_workflow():
    plan = first_workflow()
    tutorial = pages.read("tutorial.md")
    blocks = pages.indented_blocks(tutorial)
    assert plan["recipe"] in blocks and plan["token"] in blocks
    assert plan["console"] in tutorial


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_the_readme_first_workflow_works_as_written(tmp_path):
    namespace = namespace_command()
    if namespace is None:
        message = "cannot make a PID and network namespace here (unshare)"
        if os.environ.get("RUNTARA_TEST_REQUIRE_ROOT") == "1":
            pytest.fail(f"{message}, and RUNTARA_TEST_REQUIRE_ROOT=1")
        pytest.skip(message)
    plan = first_workflow()
    plan["tree"] = str(fresh_checkout(tmp_path / "runtara-core"))
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    (tmp_path / "tmp").mkdir()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("RUNTARA_") or name.startswith("RUNTARA_TEST_")
    }
    env.update(
        RUNTARA_RUNTIME_DIR=str(tmp_path / "runtime"),
        RUNTARA_INSTANCE_CGROUPS="off",
        TMPDIR=str(tmp_path / "tmp"),  # the examples' output, away from the user's
    )
    ran = subprocess.run(
        [*namespace, sys.executable, "-m", "tests.docs.first_workflow", "plan.json", "result.json"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(pages.ROOT)},
        capture_output=True,
        text=True,
        timeout=380,
    )
    assert ran.returncode == 0, ran.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    log = result["server_log"]
    assert result["server_ready"], log

    recipe = result["recipe"]
    assert recipe["code"] == 0, (recipe, log)
    instance = plan["instance"]
    assert f"instance           {instance}" in recipe["stdout"]
    # the second attempt ran only the step the kill cut short and those after it
    attempts = re.split(r"--- attempt \d+ .*---\n", recipe["stdout"])[1:]
    assert len(attempts) == 2, recipe["stdout"]
    started = [
        re.findall(r"^(?:stdout\| )?([\w-]+) \S+: started$", text, re.MULTILINE)
        for text in attempts
    ]
    steps = ["reserve-stock", "charge-card", "ship", "send-email"]
    assert started[0] + started[1][1:] == steps or started[0] + started[1] == steps, started
    assert started[1][-1] == "send-email" and "reserve-stock" not in started[1], started

    assert result["show"]["instance"]["status"] == "completed", result["show"]
    exits = [(facts["signal"], facts["code"]) for facts in result["exited"]]
    assert sorted(exits, key=str) == sorted([(9, None), (None, 0)], key=str), exits

    token = result["token"]
    assert token["code"] == 0 and re.fullmatch(r"\S{16,}\n", token["stdout"]), token
    console = result["console"]
    assert console["status"] == 200, console
    assert instance in console["body"] and "completed" in console["body"]
    assert result["server_exit"] == 0, log
