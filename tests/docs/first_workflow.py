"""Run the README's first workflow as a newcomer would, and record what came of it.

``python -m tests.docs.first_workflow PLAN RESULT`` reads the plan (JSON: the copy
of the repository to run in, the server's command, the recipe's commands, the
command printing the console's credential, the console's address) that
``test_first_workflow.py`` took from the README, and writes what happened into
RESULT (JSON) for the test to check.

It runs as the first process of a PID and network namespace of its own (the test
starts it under ``unshare``), so that the recipe's own commands work unchanged:
the server takes the README's ports on a loopback of its own, and ``pkill -f``
sees only the recipe's processes. When it ends, everything it started ends too.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def main(plan_path: str, result_path: str) -> int:
    plan = json.loads(Path(plan_path).read_text())
    tree = Path(plan["tree"])
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    result: dict = {}
    server_log = tree.parent / "server.log"
    with server_log.open("wb") as log:
        server = subprocess.Popen(
            ["bash", "-c", plan["server"]], cwd=tree, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        result["server_ready"] = _wait(lambda: "serving HTTP on" in server_log.read_text(), 60)
        if result["server_ready"]:
            _run_recipe(plan, tree, result)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            result["server_exit"] = server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            result["server_exit"] = "killed after 30 s"
        result["server_log"] = server_log.read_text()[-4000:]
        Path(result_path).write_text(json.dumps(result))
    return 0


def _run_recipe(plan: dict, tree: Path, result: dict) -> None:
    # The commands go in on stdin, as typed into a terminal: in a ``bash -c``
    # command line, ``pkill -f`` would find them, and kill that shell.
    recipe = subprocess.run(
        ["bash", "-e"],
        input=plan["recipe"] + "\n",
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=300,
    )
    result["recipe"] = {"code": recipe.returncode, "stdout": recipe.stdout, "stderr": recipe.stderr}
    token = subprocess.run(
        ["bash", "-e", "-c", f". .venv/bin/activate\n{plan['token']}"],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=60,
    )
    result["token"] = {"code": token.returncode, "stdout": token.stdout, "stderr": token.stderr}
    runtara = str(tree / ".venv" / "bin" / "runtara-core")

    def shown() -> dict:
        answer = subprocess.run(
            [runtara, "show", plan["instance"], "--json"], capture_output=True, text=True
        )
        return json.loads(answer.stdout) if answer.returncode == 0 else {}

    # A loaded machine may be slower than the recipe's pauses: wait for the end.
    _wait(lambda: shown().get("instance", {}).get("status") == "completed", 120)
    result["show"] = shown()
    exited = subprocess.run(
        [runtara, "events", plan["instance"], "--type", "exited", "--json"],
        capture_output=True,
        text=True,
    )
    events = json.loads(exited.stdout)["items"] if exited.returncode == 0 else []
    result["exited"] = [json.loads(base64.b64decode(event["payload"])) for event in events]
    request = urllib.request.Request(
        plan["console"], headers={"Authorization": f"Bearer {token.stdout.strip()}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as page:
            result["console"] = {"status": page.status, "body": page.read().decode()}
    except urllib.error.HTTPError as error:
        result["console"] = {"status": error.code, "body": error.read().decode()}


def _wait(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
