"""Every named query reads the large tables through an index, in both dialects.

The tables that grow with the instances (instances, checkpoints, events,
launches, signals, queue starts) must never be read whole by a query the
server runs per tick or per request: a store of a million finished instances
would make each such query cost in proportion. Each query (with each of its
filters' combinations) is planned on a freshly migrated database: SQLite's
EXPLAIN QUERY PLAN must show no SCAN of a large table, and PostgreSQL's
EXPLAIN, with sequential scans disabled (so that an empty table's cheap scan
does not hide a missing index), no Seq Scan of one. The few exemptions are
listed with why. PostgreSQL's ``call_*`` entries call the server-side
functions of migration 0006, whose statements EXPLAIN does not show: they
read and write one instance's rows by its key.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import re
import sqlite3

import psycopg
import pytest

from runtara.drivers.postgres import PostgresDriver
from runtara.drivers.sqlite import SqliteDriver
from runtara.drivers.sqlite.transaction import to_text
from runtara.storage import queries, sqlbase

LARGE = {
    "instances",
    "checkpoints",
    "instance_events",
    "instance_launches",
    "pending_signals",
    "pending_checkpoint_signals",
    "queue_starts",
}
"""Tables that grow with the instances (queues, schedules and the migrations
ledger hold what operators configure: a few rows)."""
EXEMPT = {
    "list_instances": "OFFSET paging, kept for older clients: it reads the rows it skips "
    "(pages by cursor use list_instances_after)",
    "count_instances": "an exact count (the metrics' per-status gauges, older clients' "
    "totals) reads every matching index entry; pages count with count_instances_up_to",
    "lock_schema": "migrations, at start-up only",
    "applied_migrations": "migrations, at start-up only",
    "migrations_table_exists": "start-up only",
    "probe_write": "start-up only",
}
READ_IN_ORDER = {
    "list_instances_after": "a page read along the list's index from its cursor, "
    "stopping at the limit",
    "list_instances_before": "the page before a cursor, read backwards along the same index",
    "count_instances_up_to": "counts index entries from one end, stopping at the cap",
}
"""Queries that may read an index from one end: their limit stops them."""
NOT_SORTED = ("list_instances_after", "list_instances_before")
"""Pages that must come in the index's order, never sorted after reading."""
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
NUMBERS = {"limit", "offset", "at_most", "held_attempt", "attempt", "version"}
TEXT_VALUES = {"status": "running", "signal_type": "cancel", "event_type": "started"}
SLOT_CHOICES = {
    "instance_filter": ("tenant_id", "status"),
    "page_filter": ("tenant_id", "status", "after"),
    "checkpoint_filter": sqlbase.CHECKPOINT_FILTERS,
    "event_filter": ("event_type", "subtype", "created_after", "created_before"),
}
_ALIAS = re.compile(r"\b(?:FROM|JOIN)\s+([a-z_]+)(?:\s+(?:AS\s+)?([a-z]+))?", re.IGNORECASE)
_NOT_ALIAS = {"where", "join", "left", "inner", "on", "indexed", "order", "group", "limit"}


def variants(named: queries.Queries, name: str) -> list[tuple[str, tuple[str, ...]]]:
    """The SQL of ``name``, once per combination of its slot's fragments."""
    family = named.slot(name)
    if family is None:
        return [(named[name], ())]
    if family not in SLOT_CHOICES:  # the columns an update writes: one is enough
        key = next(n.split(".", 1)[1] for n in named if n.startswith(family + "."))
        return [(named.compose(name, (key,), ", "), (key,))]
    choices = SLOT_CHOICES[family]
    return [
        (named.compose(name, keys, " AND "), keys)
        for size in range(len(choices) + 1)
        for keys in itertools.combinations(choices, size)
    ]


def value(name: str, dialect: str) -> object:
    if name in NUMBERS:
        return 10
    if name in TEXT_VALUES:
        return TEXT_VALUES[name]
    if name.endswith(("_at", "_until", "_before", "_after")) or name in {"now", "cutoff"}:
        return to_text(T0) if dialect == "sqlite" else T0
    if name in {"state", "payload", "output", "input"}:
        return b"x"
    return "x"


def tables_of(sql: str) -> dict[str, str]:
    """Each name a plan may use for a table (the table's own, its aliases) -> the table."""
    found = {}
    for table, alias in _ALIAS.findall(sql):
        found[table.lower()] = table.lower()
        if alias and alias.lower() not in _NOT_ALIAS:
            found[alias.lower()] = table.lower()
    return found


def checked(named: queries.Queries) -> list[str]:
    return sorted(
        name
        for name in named
        if "." not in name
        and name not in EXEMPT
        and not name.startswith("call_")  # PostgreSQL's functions: see the test below
        and not named[name].lstrip().upper().startswith(("INSERT", "CREATE"))
    )


def sqlite_problems(connection: sqlite3.Connection, name: str, sql: str) -> list[str]:
    params = {key: value(key, "sqlite") for key in re.findall(r":([a-z_]+)", sql)}
    plan = [row[3] for row in connection.execute("EXPLAIN QUERY PLAN " + sql, params)]
    tables = tables_of(sql)
    problems = []
    for step in plan:
        scan = re.match(r"SCAN (\w+)( USING (COVERING )?INDEX \w+)?$", step)
        if scan and tables.get(scan.group(1).lower()) in LARGE:
            if scan.group(2) is None or name not in READ_IN_ORDER:
                problems.append(step)
        if name in NOT_SORTED and "TEMP B-TREE FOR ORDER BY" in step:
            problems.append(step)
    return [f"{' | '.join(plan)}: {problem}" for problem in problems]


def postgres_problems(connection: psycopg.Connection, name: str, sql: str) -> list[str]:
    """Seq Scans of large tables, and index scans of them with no Index Cond (the
    whole index read; a partial index holds only the rows its condition keeps)
    outside :data:`READ_IN_ORDER`."""
    params = {key: value(key, "postgresql") for key in re.findall(r"%\((\w+)\)s", sql)}
    plan = [row[0] for row in connection.execute("EXPLAIN " + sql, params)]
    whole = {
        index
        for index, table, definition in connection.execute(
            "SELECT indexname, tablename, indexdef FROM pg_indexes "
            "WHERE schemaname = current_schema()"
        )
        if table in LARGE and " WHERE " not in definition
    }
    problems = []
    for number, step in enumerate(plan):
        scan = re.search(r"Seq Scan on (\w+)", step)
        if scan and scan.group(1) in LARGE:
            problems.append(step.strip())
        index = re.search(
            r"(?:Index Scan|Index Only Scan|Bitmap Index Scan) (?:using|on) (\w+)", step
        )
        if index and index.group(1) in whole and name not in READ_IN_ORDER:
            if not any("Index Cond" in line for line in _details(plan, number)):
                problems.append(step.strip())
        if name in NOT_SORTED and re.search(r"\bSort\b", step):
            problems.append(step.strip())
    return [f"{' | '.join(line.strip() for line in plan)}: {problem}" for problem in problems]


def _details(plan: list[str], number: int) -> list[str]:
    """The lines that describe the plan node on line ``number`` (up to its children)."""
    depth = len(plan[number]) - len(plan[number].lstrip())
    found = []
    for line in plan[number + 1 :]:
        if len(line) - len(line.lstrip()) <= depth or "->" in line:
            break
        found.append(line)
    return found


@pytest.fixture
def sqlite_database(tmp_path):
    path = tmp_path / "plans.db"
    driver = SqliteDriver(f"sqlite:{path}")
    driver.migrate()
    driver.close()
    connection = sqlite3.connect(path)
    yield connection
    connection.close()


@pytest.fixture
def postgres_database(postgres_url):
    driver = PostgresDriver(postgres_url, workers=1)
    driver.migrate()
    driver.close()
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("SET enable_seqscan = off")
        yield connection


def plan_failures(dialect: str, problems) -> list[str]:
    """Every named query of ``dialect`` (each variant) whose plan ``problems(name, sql)``
    finds fault with."""
    named = queries.load(dialect)
    names = checked(named)
    assert {"list_instances_after", "list_lapsed_launches", "select_due_launches"} <= set(names)
    return [
        f"{name} {keys}: {problem}"
        for name in names
        for sql, keys in variants(named, name)
        for problem in problems(name, sql)
    ]


def test_sqlite_reads_the_large_tables_through_indexes(sqlite_database):
    problems = functools.partial(sqlite_problems, sqlite_database)
    assert plan_failures("sqlite", problems) == []


def test_postgresql_reads_the_large_tables_through_indexes(postgres_database):
    problems = functools.partial(postgres_problems, postgres_database)
    assert plan_failures("postgresql", problems) == []


def test_the_check_finds_a_full_scan(sqlite_database, postgres_database):
    # the same check on a query without an index: it must fail
    sql = "SELECT instance_id FROM instances WHERE error = 'x'"
    assert sqlite_problems(sqlite_database, "probe", sql)
    assert postgres_problems(postgres_database, "probe", sql.replace("'x'", "%(error)s"))
    whole_index = "SELECT instance_id FROM instances WHERE instance_id NOT IN (SELECT instance_id FROM instance_launches)"
    assert postgres_problems(postgres_database, "probe", whole_index)
    sorted_page = "SELECT instance_id FROM instances ORDER BY error LIMIT 5"
    assert sqlite_problems(sqlite_database, "list_instances_after", sorted_page)
    assert postgres_problems(postgres_database, "list_instances_after", sorted_page)


def test_every_exemption_names_a_query():
    for dialect in ("sqlite", "postgresql"):
        named = queries.load(dialect)
        assert set(EXEMPT) | set(READ_IN_ORDER) <= set(named)
