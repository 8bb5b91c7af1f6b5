from __future__ import annotations

import ast

from tests.examples.conftest import EXAMPLES

README = (EXAMPLES.parent / "README.md").read_text()
SCRIPTS = sorted(EXAMPLES.glob("*.py"))


def test_every_example_says_how_to_run_it():
    assert [script.name for script in SCRIPTS] == [
        "approval.py",
        "batch_job.py",
        "long_sleep.py",
        "order_pipeline.py",
    ]
    for script in SCRIPTS:
        source = script.read_text()
        assert f"python examples/{script.name}" in ast.get_docstring(ast.parse(source)), script
        assert source.endswith('\n\nif __name__ == "__main__":\n    sdk.main(workflow)\n'), script


def test_the_readme_shows_every_example_after_the_sdk_section():
    after_sdk = README.split("## Python SDK\n", 1)[1].split("\n## ", 1)[1]
    assert after_sdk.startswith("Example instance scripts\n")
    section = after_sdk.split("\n## ", 1)[0]
    for script in SCRIPTS:
        assert f"**`{script.name}`**" in section, script
        assert f"python examples/{script.name}" in section, script


def test_scripts_that_write_files_name_the_folder_they_write_to():
    writers = [script for script in SCRIPTS if ".open(" in script.read_text()]
    assert [script.name for script in writers] == ["batch_job.py", "order_pipeline.py"]
    for script in writers:
        docstring = ast.get_docstring(ast.parse(script.read_text()))
        assert "EXAMPLES_OUTPUT_DIR" in docstring and "never the working" in docstring, script
    assert "EXAMPLES_OUTPUT_DIR" in README.split("## Example instance scripts\n", 1)[1]
