"""Empty every table except the migration record (between tests, and between bench steps)."""

from __future__ import annotations

import psycopg2


def truncate_tables(dsn: str) -> None:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT quote_ident(tablename) FROM pg_tables "
                "WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
            )
            tables = [row[0] for row in cur.fetchall()]
            if tables:
                cur.execute("TRUNCATE " + ", ".join(tables) + " RESTART IDENTITY CASCADE")
    finally:
        conn.close()
