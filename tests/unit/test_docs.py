"""The README stays true to the code: set-up commands, CI, and every setting."""

from __future__ import annotations

import re
from pathlib import Path

from runtara import config

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def readme_commands() -> list[str]:
    return re.findall(r"^    (python3 -m venv .*)$", README, flags=re.MULTILINE)


def test_readme_gives_the_two_set_up_commands():
    commands = readme_commands()
    assert len(commands) == 2
    serve, test = commands
    assert serve.endswith(".venv/bin/runtara-core")
    assert "pytest" in test


def test_ci_runs_exactly_the_readme_test_command():
    script = (ROOT / ".ci" / "run").read_text()
    test_command = readme_commands()[1]
    assert test_command in script.splitlines()


def test_every_setting_is_documented_with_its_variable():
    section = README.split("## Configuration\n", 1)[1].split("\n## ", 1)[0]
    for setting in config.SERVER_SETTINGS + config.TOOL_SETTINGS + config.BENCH_SETTINGS:
        assert f"| `{setting.flag}` | `{setting.env}` |" in section, setting.flag


def test_every_test_the_guarantees_cite_exists():
    section = README.split("## Guarantees", 1)[1].split("\n## ", 1)[0]
    cited = set(re.findall(r"`((?:tests|runtara)/[\w/]+\.py)::(?:(\w+)::)?(\w+)`", section))
    assert len(cited) > 20
    for path, _cls, name in cited:
        source = (ROOT / path).read_text()
        assert re.search(rf"def {name}\(", source), f"{path}::{name} is cited but does not exist"
