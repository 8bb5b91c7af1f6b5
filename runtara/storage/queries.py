"""Named SQL queries: ``queries.sql`` next to the migrations' dialect folders.

A queries file is a list of entries, each headed by a ``-- name: <query_name>``
line; the SQL below the header, up to the next header, is the query (comment
lines are documentation and are dropped). ``queries.sql`` holds every query
once; ``<dialect>/queries.sql`` holds only the dialect's own: an entry of the
same name replaces the shared one (a different function, a different schema
query), and a dialect may add names of its own (PostgreSQL's ``call_*``).

All files write parameters as ``:name``. :func:`load` writes each query in
its dialect's terms: ``%(name)s`` (and ``%%`` for ``%``) for psycopg; for
SQLite, which has no row locks, a closing ``FOR UPDATE ...`` / ``FOR SHARE ...``
line is dropped, the write transaction holding the database's only write lock.

A *piece* is an entry that others name in braces, ``{instance_columns}``: it
is written into them when the files are loaded (a record's columns, in the
order its reader expects, are listed once), and is no query of its own.

A query may hold one slot, ``{family}``, filled at run time by
:meth:`Queries.compose` with the *fragments* named ``family.key`` for the keys
a call needs: the optional filters of a listing (joined by AND) or the columns
an update writes (joined by commas). Composing keeps each statement as narrow
as the call: an unchanged column is not written, and an absent filter leaves
the indexes of the others usable.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from importlib import resources

from runtara import errors

FILE = "queries.sql"
_HEADER = re.compile(r"^--\s*name:\s*(\S+)\s*$")
_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?$")
_SLOT = re.compile(r"\{([a-z][a-z0-9_]*)\}")
_PARAMETER = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")
_ROW_LOCK = re.compile(r"\n\s*FOR (UPDATE|NO KEY UPDATE|SHARE|KEY SHARE)\b[^\n]*$")


def _for_sqlite(sql: str) -> str:
    return _ROW_LOCK.sub("", sql)


def _for_psycopg(sql: str) -> str:
    return _PARAMETER.sub(r"%(\1)s", sql.replace("%", "%%"))


DIALECTS = {"sqlite": _for_sqlite, "postgresql": _for_psycopg}
"""How each dialect writes the shared SQL."""


def parse(text: str, source: str = FILE) -> dict[str, str]:
    """The queries of a file, by name; raises MigrationError on a malformed file."""
    found: dict[str, str] = {}
    name: str | None = None
    lines: list[str] = []

    def close() -> None:
        if name is None:
            return
        sql = "\n".join(lines).strip()
        if not sql:
            raise errors.MigrationError(f"{source}: query {name!r} is empty")
        found[name] = sql

    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header is not None:
            close()
            name, lines = header.group(1), []
            if not _NAME.match(name):
                raise errors.MigrationError(f"{source}:{number}: bad query name {name!r}")
            if name in found:
                raise errors.MigrationError(f"{source}:{number}: query {name!r} defined twice")
        elif line.lstrip().startswith("--"):
            continue
        elif name is None:
            if line.strip():
                raise errors.MigrationError(f"{source}:{number}: SQL before the first name")
        else:
            lines.append(line.rstrip())
    close()
    return found


class Queries(dict[str, str]):
    """The named queries of one dialect: ``queries[name]`` is the SQL."""

    def __init__(self, dialect: str, by_name: Mapping[str, str]) -> None:
        super().__init__(by_name)
        self.dialect = dialect
        self._composed: dict[tuple[str, tuple[str, ...], str], str] = {}

    def slot(self, name: str) -> str | None:
        """The fragment family of the query's ``{family}`` slot, if it has one."""
        found = _SLOT.search(self[name])
        return None if found is None else found.group(1)

    def compose(self, name: str, keys: tuple[str, ...], separator: str) -> str:
        """Query ``name`` with its slot filled by the fragments ``<family>.<key>``
        of ``keys`` joined by ``separator``; ``TRUE`` when there are none."""
        cache_key = (name, keys, separator)
        composed = self._composed.get(cache_key)
        if composed is None:
            family = self.slot(name)
            if family is None:
                raise KeyError(f"query {name!r} has no slot to compose")
            parts = [self[f"{family}.{key}"] for key in keys]
            composed = self[name].replace(
                "{" + family + "}", separator.join(parts) if parts else "TRUE"
            )
            # Races only compute the same string twice; the key set is small
            # (the subsets of a few filters and columns).
            self._composed[cache_key] = composed
        return composed


@functools.cache
def load(dialect: str, package: str = "runtara.migrations") -> Queries:
    """The named queries shipped for ``dialect``, in its terms."""
    if dialect not in DIALECTS:
        raise errors.MigrationError(f"no named queries for the SQL dialect {dialect!r}")
    root = resources.files(package)
    shared = parse(root.joinpath(FILE).read_text(encoding="utf-8"))
    own_source = f"{dialect}/{FILE}"
    own = parse(root.joinpath(dialect, FILE).read_text(encoding="utf-8"), own_source)
    write = DIALECTS[dialect]
    return Queries(dialect, {name: write(sql) for name, sql in _with_pieces(shared | own).items()})


def _with_pieces(by_name: Mapping[str, str]) -> dict[str, str]:
    """The entries with each piece written in where it is named, and the pieces left out."""
    pieces = {name for sql in by_name.values() for name in _SLOT.findall(sql) if name in by_name}

    def fill(named: re.Match[str]) -> str:
        return by_name[named.group(1)] if named.group(1) in pieces else named.group(0)

    return {name: _SLOT.sub(fill, sql) for name, sql in by_name.items() if name not in pieces}
