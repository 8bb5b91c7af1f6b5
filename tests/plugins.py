"""Build throwaway installed distributions that register storage drivers."""

from __future__ import annotations

import textwrap
from pathlib import Path


def make_distribution(
    folder: Path, name: str, entry_points: dict[str, str], modules: dict[str, str]
) -> None:
    """Write ``<name>-1.0.dist-info`` with the given ``runtara.drivers`` entry points,
    plus the modules (name -> source), into a folder meant for sys.path."""
    info = folder / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "\n".join(f"{key} = {value}" for key, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[runtara.drivers]\n{lines}\n")
    for module, source in modules.items():
        (folder / f"{module}.py").write_text(textwrap.dedent(source))


BROKEN_IMPORT = """
raise ImportError("libfoo.so.3: cannot open shared object file")
"""

NOT_A_DRIVER = """
class Something:
    pass
"""
