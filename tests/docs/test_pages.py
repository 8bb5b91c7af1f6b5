"""The README and the site's pages stay true to the code: the set-up commands and
CI, every setting and SDK variable, the guarantees' tests, the launch protocol."""

from __future__ import annotations

import re

from runtara import config
from runtara.sdk import config as sdk_config
from runtara.storage import launches
from tests.docs import pages

README = pages.README.read_text()


def setup_commands() -> list[str]:
    return re.findall(r"^    (python3 -m venv .*)$", README, flags=re.MULTILINE)


def test_the_readme_is_short_and_gives_the_two_set_up_commands():
    assert len(README.splitlines()) <= 250
    commands = setup_commands()
    assert len(commands) == 2
    serve, test = commands
    assert serve.startswith("python3 -m venv .venv && .venv/bin/pip install -e . && ")
    assert ".venv/bin/runtara-core" in serve
    assert test.endswith(".venv/bin/python -m pytest")


def test_ci_runs_exactly_the_readme_test_command():
    script = (pages.ROOT / ".ci" / "run").read_text()
    assert setup_commands()[1] in script.splitlines()


def test_ci_builds_the_site_strictly_before_the_tests():
    lines = (pages.ROOT / ".ci" / "run").read_text().splitlines()
    (build,) = [line for line in lines if line.startswith("python3 -m venv") and "mkdocs" in line]
    assert "--strict" in build and "-f docs/mkdocs.yml" in build
    assert lines.index(build) < lines.index(setup_commands()[1])


def test_every_page_is_in_the_navigation():
    navigation = (pages.ROOT / "docs" / "mkdocs.yml").read_text()
    for page in pages.PAGES.rglob("*.md"):
        assert f": {page.relative_to(pages.PAGES)}\n" in navigation, page


def test_every_setting_is_in_the_settings_reference():
    reference = pages.read("reference/settings.md")
    for setting in config.SERVER_SETTINGS + config.TOOL_SETTINGS + config.BENCH_SETTINGS:
        assert f"| `{setting.flag}` | `{setting.env}` |" in reference, setting.flag
    for setting in sdk_config.SETTINGS:
        assert f"| `{setting.env}` |" in reference, setting.env


def test_every_test_the_guarantees_cite_exists():
    guarantees = pages.read("guarantees.md")
    cited = set(re.findall(r"`((?:tests|runtara)/[\w/]+\.py)::(?:(\w+)::)?(\w+)`", guarantees))
    assert len(cited) > 20
    for path, _cls, name in cited:
        source = (pages.ROOT / path).read_text()
        assert re.search(rf"def {name}\(", source), f"{path}::{name} is cited but does not exist"


def launch_tables() -> tuple[dict[str, str], dict[str, str]]:
    """The launch protocol's states and transitions as launches.py declares them:
    each state with its instance column, each transition with its function."""
    doc = launches.__doc__
    states_table, transitions_table = re.findall(r"\n(=+  =+.*?\n=+  .*?)\n\n", doc, re.DOTALL)
    states = {}
    for line in states_table.splitlines()[3:-1]:
        if line[:1].strip():
            states[line.split()[0]] = line
    transitions = {}
    for line in transitions_table.splitlines()[3:-1]:
        name, function = line[:16].strip(), line.split()[-1]
        if name:
            transitions[name] = function
    return states, transitions


def test_the_launch_protocol_page_has_the_states_and_transitions_of_the_code():
    states, transitions = launch_tables()
    section = pages.section(pages.read("protocol.md"), "## The launch protocol")
    rows = re.findall(r"^\| ([\w ]+?) \|", section, re.MULTILINE)
    shown_states = rows[1 : rows.index("transition")]
    shown_transitions = rows[rows.index("transition") + 1 :]
    assert shown_states == list(states)
    assert shown_transitions == list(transitions)
    for function in transitions.values():
        assert callable(getattr(launches, function)), function


def test_every_link_of_the_readme_leads_to_a_file_of_the_repository():
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    relative = [link for link in links if "://" not in link]
    assert len(relative) > 10
    for link in relative:
        assert (pages.ROOT / link).exists(), link
