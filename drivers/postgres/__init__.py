"""PostgreSQL through psycopg 3 and psycopg_pool."""

from __future__ import annotations

from runtara.drivers.postgres.driver import PostgresDriver

__all__ = ["PostgresDriver"]
