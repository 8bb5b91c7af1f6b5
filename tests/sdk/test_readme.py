from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from runtara import records
from runtara.sdk import config

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def sdk_section() -> str:
    return README.split("## Python SDK\n", 1)[1].split("\n## ", 1)[0]


def test_the_readme_example_runs_and_exits_to_sleep(server, tmp_path):
    (example,) = re.findall(r"```python\n(.*?)```", sdk_section(), flags=re.DOTALL)
    script = tmp_path / "workflow.py"
    script.write_text(example)
    host, port = server.address
    env = {
        **os.environ,
        "RUNTARA_INSTANCE_ID": "order-17",
        "RUNTARA_TENANT_ID": "acme",
        "RUNTARA_SERVER_ADDR": f"{host}:{port}",
        "RUNTARA_SKIP_CERT_VERIFICATION": "true",
    }
    assert subprocess.run([sys.executable, str(script)], env=env, timeout=60).returncode == 0
    stored = server.instance("order-17")
    assert (stored.status, stored.checkpoint_id) == (
        records.InstanceStatus.SUSPENDED,
        "sleep::cool-off",
    )
    charged = server.read(lambda tx: tx.get_checkpoint("order-17", "durable::charge::order-17"))
    assert json.loads(charged.state)["result"] == {"order": "order-17", "charged": 42}


def test_the_readme_lists_every_sdk_variable():
    for setting in config.SETTINGS:
        assert f"| `{setting.env}` |" in sdk_section(), setting.env
