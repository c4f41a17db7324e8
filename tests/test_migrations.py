"""Migrations apply in order, once each, even with several runners at the same moment."""

import json
import os
import subprocess
import sys
import uuid
from urllib.parse import urlparse, urlunparse

import psycopg2
import pytest

from devstack.processes import ROOT
from quizapp.migrate import MIGRATIONS_DIR, migrate


@pytest.fixture
def scratch_db():
    admin_dsn = os.environ["DATABASE_URL"]
    name = "mig_" + uuid.uuid4().hex[:10]
    admin = psycopg2.connect(admin_dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    parsed = urlparse(admin_dsn)
    yield urlunparse(parsed._replace(path="/" + name))
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()


def test_parallel_runners_apply_each_migration_once(scratch_db, tmp_path):
    # A migration that would fail if run twice proves exactly-once application.
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / "9998_slow.sql").write_text("CREATE TABLE once_only (x int); SELECT pg_sleep(0.5);")
    (tmp_path / "9999_after.sql").write_text("INSERT INTO once_only VALUES (1);")

    script = (
        "import json, sys; from pathlib import Path; from quizapp.migrate import migrate; "
        "print(json.dumps(migrate(sys.argv[1], Path(sys.argv[2]))))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, scratch_db, str(tmp_path)], stdout=subprocess.PIPE, cwd=ROOT
        )
        for _ in range(6)
    ]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        results.append(json.loads(out))
    applied = [name for r in results for name in r]
    assert sorted(applied) == sorted(p.name for p in tmp_path.glob("*.sql"))
    conn = psycopg2.connect(scratch_db)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM once_only")
        assert cur.fetchone()[0] == 1
        cur.execute("SELECT name FROM schema_migrations ORDER BY name")
        assert [r[0] for r in cur.fetchall()] == sorted(p.name for p in tmp_path.glob("*.sql"))
    conn.close()


def test_failed_migration_rolls_back_and_is_not_recorded(scratch_db, tmp_path):
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE a (x int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE b (x int); SELECT * FROM missing_table;")
    with pytest.raises(psycopg2.Error):
        migrate(scratch_db, tmp_path)
    conn = psycopg2.connect(scratch_db)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT name FROM schema_migrations")
        assert [r[0] for r in cur.fetchall()] == ["0001_ok.sql"]
        cur.execute("SELECT to_regclass('b')")
        assert cur.fetchone()[0] is None
    conn.close()
