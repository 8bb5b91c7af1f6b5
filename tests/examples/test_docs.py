from __future__ import annotations

import ast

from tests.docs import pages
from tests.examples.conftest import EXAMPLES

TUTORIAL = pages.read("tutorial.md")
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


def test_the_tutorial_starts_every_example():
    for script in SCRIPTS:
        assert f"**`{script.name}`**" in TUTORIAL, script
        assert f"-- python examples/{script.name}" in TUTORIAL, script


def test_scripts_that_write_files_name_the_folder_they_write_to():
    writers = [script for script in SCRIPTS if ".open(" in script.read_text()]
    assert [script.name for script in writers] == ["batch_job.py", "order_pipeline.py"]
    for script in writers:
        docstring = ast.get_docstring(ast.parse(script.read_text()))
        assert "EXAMPLES_OUTPUT_DIR" in docstring and "never the working" in docstring, script
    assert "EXAMPLES_OUTPUT_DIR" in TUTORIAL
