"""scripts/services.sh run again from a recipe that loaded var/services.env keeps the file whole."""

import os
import subprocess

import pytest

from devstack.processes import ROOT


@pytest.mark.skipif("QUIZAPP_PG_PORT" not in os.environ, reason="Postgres and Redis are an operator's here")
def test_the_test_urls_count_as_the_local_services():
    # make test's PgBouncer job runs `make services` with DATABASE_URL / REDIS_URL set to the local
    # test database and Redis db, as this suite is: the file must still name the local services.
    assert os.environ["DATABASE_URL"].endswith("/quizapp_test") and os.environ["REDIS_URL"].endswith("/1")
    done = subprocess.run(
        ["bash", "scripts/services.sh", "start"], cwd=ROOT, capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = (ROOT / "var" / "services.env").read_text().splitlines()
    assert any(line.startswith("DATABASE_URL=") and line.endswith("/quizapp") for line in lines), lines
    assert any(line.startswith("REDIS_URL=") and line.endswith("/0") for line in lines), lines
