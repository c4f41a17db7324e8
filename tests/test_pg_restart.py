"""After a Postgres restart the pool discards dead connections and the next request succeeds."""

import os
import subprocess
import time

import pytest

from quizapp.db import transaction

PGDATA = os.environ.get("QUIZAPP_PGDATA")


def _pg_ctl(*args):
    cmd = ["/usr/local/bin/pg_ctl", "-D", PGDATA, *args]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


@pytest.mark.slow
@pytest.mark.skipif(not PGDATA, reason="needs the local cluster started by make (QUIZAPP_PGDATA)")
def test_first_request_after_restart_succeeds(make_app):
    app = make_app(DB_POOL_MIN=4, DB_POOL_MAX=4)

    @app.get("/_t/write")
    def write():
        with transaction() as cur:
            cur.execute("INSERT INTO audit_log (actor, action) VALUES ('test', 'restart') RETURNING id")
            return {"id": cur.fetchone()["id"]}

    client = app.test_client()
    app.extensions["db_pool"].warm()
    assert client.get("/_t/write").status_code == 200
    pg_log = os.environ.get("QUIZAPP_PG_LOG", "/dev/null")
    # No -o: pg_ctl restarts with the options of the last start (postmaster.opts), its Unix socket
    # directory (-k) included; "-o -p PORT" alone left the cluster without its socket afterwards.
    _pg_ctl("-m", "fast", "-w", "restart", "-l", pg_log)
    accepted = time.monotonic()
    response = client.get("/_t/write")
    recovered = time.monotonic() - accepted
    print(
        f"\n[figure] first write after Postgres restart: {response.status_code} in {recovered * 1000:.0f} ms"
    )
    assert response.status_code == 200, response.data
