"""The console's templates and the filters they use.

Jinja2 renders them: it escapes every value by default (instance ids,
payloads, errors and logs are the instances' own text), gives every page one
layout, and needs no build step. The templates live in ``templates/`` inside
the package; the style sheet and the one small script are files of
``static/``, served by the endpoint itself, so that a page fetches nothing
from anywhere else and the pages need no inline script or style (the
Content-Security-Policy allows none).
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

import jinja2

from runtara.http.messages import path_of

TEXT_LIMIT = 16 * 1024
"""Characters of an output, payload or log shown on a page; the rest is cut."""


def when(moment: dt.datetime | None) -> str:
    """``2026-11-27 10:02:11.532Z``, or ``-``."""
    if moment is None:
        return "-"
    moment = moment.astimezone(dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S") + f".{moment.microsecond // 1000:03d}Z"


def ago(moment: dt.datetime | None, now: dt.datetime) -> str:
    """How long before ``now``: ``4 s ago``, ``12 min ago``, ``3 h ago``, ``2 d ago``
    (``in 5 s`` for a time to come)."""
    if moment is None:
        return ""
    seconds = (now - moment).total_seconds()
    span = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if span >= size:
            amount = f"{int(span // size)} {unit}"
            break
    else:
        amount = f"{int(span)} s"
    return f"{amount} ago" if seconds >= 0 else f"in {amount}"


def size(count: int) -> str:
    """Bytes as people read them: ``512 B``, ``1.5 KiB``, ``3.0 MiB``."""
    if count < 1024:
        return f"{count} B"
    for unit in ("KiB", "MiB", "GiB"):
        count /= 1024
        if count < 1024 or unit == "GiB":
            return f"{count:.1f} {unit}"
    raise AssertionError("unreachable")


def duration(seconds: float | None) -> str:
    """A span in the largest unit that gives a whole number: ``30 s``, ``5 min``,
    ``2 h``, ``1 d`` (``1.5 s``, ``90 s`` otherwise), or ``-``."""
    if seconds is None:
        return "-"
    for unit, span in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= span and seconds % span == 0:
            return f"{int(seconds // span)} {unit}"
    return f"{seconds:g} s"


def shown(data: bytes | str | None, limit: int = TEXT_LIMIT) -> str:
    """Bytes as text (invalid UTF-8 replaced), cut to ``limit`` characters with a note."""
    if data is None:
        return ""
    content = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    if len(content) <= limit:
        return content
    return content[:limit] + f"\n... ({len(content) - limit} more characters not shown)"


def link(*segments: str, **query: object) -> str:
    """A path to ``segments`` with the query parameters that are given (not None or "")."""
    given = {name: value for name, value in query.items() if value not in (None, "")}
    return path_of(*segments) + (f"?{urlencode(given)}" if given else "")


_environment = jinja2.Environment(
    loader=jinja2.PackageLoader("runtara.http", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_environment.filters.update(when=when, ago=ago, size=size, shown=shown, duration=duration)
_environment.globals.update(link=link)


def render(template: str, **context: object) -> str:
    return _environment.get_template(template).render(**context)
