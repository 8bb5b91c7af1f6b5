"""The migrations of every dialect build the same schema: the same tables, columns,
nullability, keys, unique constraints and index names, once types are reduced
to what SQLite stores (times and enums as text, booleans as integers)."""

from __future__ import annotations

import sqlite3

import psycopg

from runtara.drivers.postgres import PostgresDriver
from runtara.drivers.sqlite import SqliteDriver

SQLITE_TYPES = {"TEXT": "text", "INTEGER": "integer", "REAL": "real", "BLOB": "blob"}
POSTGRES_TYPES = {
    "text": "text",
    "USER-DEFINED": "text",  # the enum types
    "timestamp with time zone": "text",
    "integer": "integer",
    "bigint": "integer",
    "boolean": "integer",
    "double precision": "real",
    "bytea": "blob",
}


def sqlite_schema(path) -> dict:
    db = sqlite3.connect(path)
    tables = [
        row[0]
        for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    schema = {}
    for table in tables:
        info = db.execute(f"PRAGMA table_info({table})").fetchall()
        columns = {
            name: (SQLITE_TYPES[kind.upper()], bool(notnull or pk))
            for _, name, kind, notnull, _, pk in info
        }
        primary_key = tuple(
            name for *_, name in sorted((pk, name) for _, name, _, _, _, pk in info if pk)
        )
        unique, indexes = set(), set()
        for _, index, _, origin, _ in db.execute(f"PRAGMA index_list({table})"):
            if origin == "u":
                unique.add(tuple(row[2] for row in db.execute(f"PRAGMA index_info({index})")))
            elif origin == "c":
                indexes.add(index)
        schema[table] = {
            "columns": columns,
            "primary_key": primary_key,
            "unique": unique,
            "indexes": indexes,
        }
    db.close()
    return schema


def postgres_schema(url) -> dict:
    with psycopg.connect(url) as db:
        schema = {}
        tables = [
            row[0]
            for row in db.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
            )
        ]
        for table in tables:
            columns = {
                name: (POSTGRES_TYPES[kind], nullable == "NO")
                for name, kind, nullable in db.execute(
                    "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND table_name = %s",
                    (table,),
                )
            }
            keys = {"p": [], "u": set()}
            for kind, names in db.execute(
                "SELECT c.contype, array_agg(a.attname ORDER BY k.ordinality) "
                "FROM pg_constraint c "
                "CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ordinality) "
                "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum "
                "WHERE c.conrelid = to_regclass(%s) AND c.contype IN ('p', 'u') "
                "GROUP BY c.oid, c.contype",
                (table,),
            ):
                if kind == "p":
                    keys["p"] = tuple(names)
                else:
                    keys["u"].add(tuple(names))
            indexes = {
                row[0]
                for row in db.execute(
                    "SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
                    "WHERE x.indrelid = to_regclass(%s) AND NOT EXISTS "
                    "(SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)",
                    (table,),
                )
            }
            schema[table] = {
                "columns": columns,
                "primary_key": keys["p"],
                "unique": keys["u"],
                "indexes": indexes,
            }
    return schema


def test_both_migration_sets_build_the_same_schema(tmp_path, postgres_url):
    SqliteDriver(f"sqlite:{tmp_path / 'schema.db'}").migrate()
    PostgresDriver(postgres_url, workers=1).migrate()
    sqlite = sqlite_schema(tmp_path / "schema.db")
    postgres = postgres_schema(postgres_url)
    assert set(sqlite) == set(postgres)
    for table in sqlite:
        assert sqlite[table] == postgres[table], table
    assert "pending_checkpoint_signals" in sqlite
    # upstream's unused schedules table went in 0004; 0009 brings this project's own
    assert "schedule_id" not in postgres["schedules"]["columns"]


def test_migration_4_keeps_the_untaken_custom_signals(tmp_path):
    path = tmp_path / "old.db"
    SqliteDriver(f"sqlite:{path}").migrate()
    # Rebuild the state before 0004: its table, its rows, its ledger.
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(
        "DROP TABLE pending_checkpoint_signals;"
        "CREATE TABLE pending_custom_signals (instance_id TEXT NOT NULL REFERENCES instances "
        "(instance_id) ON DELETE CASCADE, checkpoint_id TEXT NOT NULL, payload BLOB, "
        "created_at TEXT NOT NULL, PRIMARY KEY (instance_id, checkpoint_id));"
        "DELETE FROM runtara_migrations WHERE version = 4;"
        "INSERT INTO instances (instance_id, tenant_id, created_at) "
        "VALUES ('i', 't', '2026-03-01 12:00:00.000000');"
        "INSERT INTO pending_custom_signals VALUES "
        "('i', 'late', x'00ff', '2026-03-01 12:00:02.000000'),"
        "('i', 'early', NULL, '2026-03-01 12:00:01.000000');"
    )
    db.close()
    driver = SqliteDriver(f"sqlite:{path}")
    assert driver.migrate() == ["0004_pending_checkpoint_signals.sql"]
    signals = driver.run(lambda tx: tx.list_custom_signals("i"), write=False)
    assert [(s.checkpoint_id, s.payload) for s in signals] == [
        ("early", b""),
        ("late", b"\x00\xff"),
    ]
    assert driver.run(lambda tx: tx.take_custom_signal("i", "late")).payload == b"\x00\xff"
    driver.close()
