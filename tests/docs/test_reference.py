"""The reference pages are what docs/generate_reference.py makes from the code now."""

from __future__ import annotations

import importlib.util

import pytest

from tests.docs import pages

GENERATOR = pages.ROOT / "docs" / "generate_reference.py"


def generator():
    spec = importlib.util.spec_from_file_location("generate_reference", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("page", ["commands.md", "settings.md", "metrics.md"])
def test_the_reference_page_matches_the_code(page):
    module = generator()
    written = (pages.PAGES / "reference" / page).read_text()
    assert written == module.pages()[page], (
        f"docs/pages/reference/{page} differs from the code: regenerate it with "
        f"`{module.REGENERATE}` and commit the result"
    )


def test_the_reference_names_every_command_flag_and_metric():
    module = generator()
    commands = pages.read("reference/commands.md")
    for name, command in module.cli.COMMANDS.items():
        parser = module.common.parser_of(command.run)
        assert f"\n## {name}\n" in commands
        for action in parser.arguments:
            for option in action.option_strings:
                assert f"`{option}`" in commands, (name, option)
    metrics = pages.read("reference/metrics.md")
    for name, kind, _labels, _help in module._metric_families():
        assert f"| `{name}{'_total' if kind == 'counter' else ''}` | {kind} |" in metrics
