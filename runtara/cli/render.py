"""Output of the inspection commands: aligned tables for people, JSON for scripts.

In JSON, times are ISO 8601 strings in UTC and byte fields (states, payloads,
outputs) are base64 strings, so nothing is lost.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Sequence

import cattrs

_json = cattrs.Converter()
_json.register_unstructure_hook(bytes, lambda value: base64.b64encode(value).decode("ascii"))
_json.register_unstructure_hook(dt.datetime, lambda value: value.isoformat())


def to_json(value: object) -> str:
    return json.dumps(_json.unstructure(value), indent=2, sort_keys=True)


def to_json_line(value: object) -> str:
    """``value`` as JSON on one line (for output that streams one object a line)."""
    return json.dumps(_json.unstructure(value), sort_keys=True)


def when(value: dt.datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def preview(value: bytes | None, width: int = 60) -> str:
    """Bytes as readable text when they are, else their size."""
    if value is None:
        return "-"
    if not value:
        return '""'
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(value)} bytes>"
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= width else text[: width - 3] + "..."


def size(count: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if count < 1024 or unit == "MiB":
            return f"{count} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def page_footer(shown: int, offset: int, total: int, noun: str) -> str:
    if total == 0:
        return f"no {noun}"
    if shown == 0:
        return f"no {noun} at offset {offset} (there are {total})"
    return f"{noun} {offset + 1}-{offset + shown} of {total}"
