"""Numbered SQL migration files and the ledger that records them.

Migrations live in a resource package (ours: ``runtara.migrations``, built from
the repository's ``sql/`` folder) as ``<dialect>/NNNN_description.sql``, next
to the dialect's named queries (``queries.sql``, read by
:mod:`runtara.storage.queries`). They
are applied in number order, each recorded with a SHA-256 checksum; an applied
file whose checksum changed is an error, never a silent skip. Drivers apply the
plan with their own connection and locking; this module only reads files and
compares them with what a database says it has applied.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from importlib import resources

import attrs

from runtara import errors
from runtara.storage import queries

FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@attrs.frozen
class Migration:
    version: int
    name: str
    """The file name, such as ``0001_initial.sql``."""
    sql: str
    checksum: str


@attrs.frozen
class AppliedMigration:
    version: int
    name: str
    checksum: str


def load(dialect: str, package: str = "runtara.migrations") -> list[Migration]:
    """The migrations of ``dialect`` in order; raises MigrationError on a bad file set."""
    folder = resources.files(package).joinpath(dialect)
    found: list[Migration] = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql") or entry.name == queries.FILE:
            continue
        match = FILE_NAME.match(entry.name)
        if match is None:
            raise errors.MigrationError(
                f"migration file {dialect}/{entry.name} is not named NNNN_description.sql"
            )
        data = entry.read_bytes()
        found.append(
            Migration(
                version=int(match.group(1)),
                name=entry.name,
                sql=data.decode("utf-8"),
                checksum=hashlib.sha256(data).hexdigest(),
            )
        )
    found.sort(key=lambda migration: migration.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise errors.MigrationError(
                f"migrations of {dialect} must be numbered 1, 2, 3...: "
                f"found {migration.name} where number {expected} was expected"
            )
    if not found:
        raise errors.MigrationError(f"no migrations found for {dialect} in {package}")
    return found


def pending(available: list[Migration], applied: Mapping[int, AppliedMigration]) -> list[Migration]:
    """The migrations still to apply, after checking the applied ones are unchanged."""
    by_version = {migration.version: migration for migration in available}
    for version, done in sorted(applied.items()):
        shipped = by_version.get(version)
        if shipped is None:
            raise errors.MigrationError(
                f"the database has migration {done.name} applied, which this version of "
                "runtara-core does not know: it was written by a newer version"
            )
        if shipped.checksum != done.checksum:
            raise errors.MigrationError(
                f"migration {shipped.name} was edited after it was applied to this database "
                f"(recorded checksum {done.checksum[:12]}, file has {shipped.checksum[:12]}); "
                "restore the original file and add the change as a new migration"
            )
    return [migration for migration in available if migration.version not in applied]
