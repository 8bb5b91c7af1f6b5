"""The documentation as the tests read it: the README and the site's pages."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = ROOT / "docs" / "pages"


def read(page: str) -> str:
    """A page of the site, by its path under docs/pages."""
    return (PAGES / page).read_text()


def section(text: str, heading: str) -> str:
    """The text under the heading ``heading`` (its level included, as ``## Name``),
    up to the next heading of that level or above."""
    level = heading.split(" ", 1)[0]
    after = text.split(f"\n{heading}\n", 1)[1]
    return re.split(rf"\n#{{1,{len(level)}}} ", after, maxsplit=1)[0]


def indented_blocks(text: str) -> list[str]:
    """The code blocks indented by four spaces, each as its lines without the indent."""
    blocks = re.findall(r"(?:^|\n\n)((?:    .*(?:\n|$))+)", text)
    return [re.sub(r"^    ", "", block, flags=re.MULTILINE).rstrip("\n") for block in blocks]
