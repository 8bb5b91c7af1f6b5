"""The workflows the README and the SDK guide show run as they say."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from runtara import records
from runtara.sdk import config
from tests.docs import pages
from tests.support import script_environment

GUIDE = pages.read("guides/writing-workflows.md")


def python_block(text: str) -> str:
    (example,) = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    return example


@pytest.mark.parametrize(
    "source, result",
    [
        (GUIDE, {"order": "order-17", "charged": 42}),
        (pages.README.read_text(), {"order": "order-17", "charged": 42}),
    ],
    ids=["the SDK guide", "the README"],
)
def test_the_example_runs_and_exits_to_sleep(server, tmp_path, source, result):
    script = tmp_path / "workflow.py"
    script.write_text(python_block(source))
    env = script_environment(server.address, "order-17")
    assert subprocess.run([sys.executable, str(script)], env=env, timeout=60).returncode == 0
    stored = server.instance("order-17")
    assert (stored.status, stored.checkpoint_id) == (
        records.InstanceStatus.SUSPENDED,
        "sleep::cool-off",
    )
    charged = server.read(lambda tx: tx.get_checkpoint("order-17", "durable::charge::order-17"))
    assert json.loads(charged.state)["result"] == result


def test_the_sdk_guide_lists_every_sdk_variable():
    for setting in config.SETTINGS:
        assert f"| `{setting.env}` |" in GUIDE, setting.env
