"""Applies migrations/NNNN_*.sql in order, each once, under a Postgres advisory lock."""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

import psycopg2

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
LOCK_KEY = 7_245_001  # advisory lock id shared by every instance migrating this database
NAME_PATTERN = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def pending_files(directory: Path = MIGRATIONS_DIR) -> list[Path]:
    files = sorted(p for p in directory.iterdir() if p.suffix == ".sql")
    for path in files:
        if not NAME_PATTERN.match(path.name):
            raise SystemExit(f"migration file name must look like 0001_name.sql: {path.name}")
    return files


def migrate(dsn: str, directory: Path = MIGRATIONS_DIR, **connect_kwargs) -> list[str]:
    """Apply what is not yet applied; return the names applied by this call.

    `dsn` must reach Postgres itself, not PgBouncer in transaction pooling mode: the advisory
    lock below is held by the session across many transactions.
    """
    applied_now = []
    conn = psycopg2.connect(dsn, application_name="quizapp-migrate", connect_timeout=10, **connect_kwargs)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            # Several instances may start at once: one migrates, the others wait and find nothing to do.
            cur.execute("SELECT pg_advisory_lock(%(key)s)", {"key": LOCK_KEY})
        conn.autocommit = False
        try:
            with conn, conn.cursor() as cur:
                cur.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                )
            for path in pending_files(directory):
                with conn, conn.cursor() as cur:
                    cur.execute("SELECT 1 FROM schema_migrations WHERE name = %(n)s", {"n": path.name})
                    if cur.fetchone():
                        continue
                    cur.execute(path.read_text())
                    cur.execute("INSERT INTO schema_migrations (name) VALUES (%(n)s)", {"n": path.name})
                applied_now.append(path.name)
                log.info("migration.applied", extra={"migration": path.name})
        finally:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%(key)s)", {"key": LOCK_KEY})
    finally:
        conn.close()
    return applied_now


def direct_dsn(environ=os.environ) -> str:
    """MIGRATE_DATABASE_URL (straight to Postgres, past PgBouncer) or else DATABASE_URL."""
    return environ.get("MIGRATE_DATABASE_URL") or environ.get("DATABASE_URL") or ""


def tls_kwargs(environ=os.environ) -> dict:
    """libpq TLS keywords from DATABASE_SSLMODE, DATABASE_SSLROOTCERT, DATABASE_SSLCERT, DATABASE_SSLKEY."""
    found = {}
    for name in ("sslmode", "sslrootcert", "sslcert", "sslkey"):
        if environ.get(f"DATABASE_{name.upper()}"):
            found[name] = environ[f"DATABASE_{name.upper()}"]
    return found


def main() -> int:
    dsn = direct_dsn()
    if not dsn:
        print("MIGRATE_DATABASE_URL or DATABASE_URL is required to migrate", file=sys.stderr)
        return 2
    applied = migrate(dsn, **tls_kwargs())
    print(f"migrations: {len(applied)} applied" + (f" ({', '.join(applied)})" if applied else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
