"""Admin actions reach every worker of every instance; the report sees them all (real gunicorn)."""

import subprocess
import time

import pytest
import requests

from devstack.forms import csrf_token
from devstack.processes import wait_for
from devstack.stack import Stack

INSTANCES, WORKERS = 2, 2


def _workers(url: str) -> list[dict]:
    time.sleep(1.05)  # the report is cached for a second
    return requests.get(url + "/api/health/detailed", timeout=10).json()["workers"]


@pytest.mark.integration
@pytest.mark.slow
def test_reset_errors_applies_on_every_worker_of_every_instance(tmp_path, pg_conn):
    with Stack(tmp_path, INSTANCES, WORKERS, app_path="tests.support.opsapp:app") as stack:
        url = stack.url
        # 404s land on workers all over the cluster (least_conn across instances).
        for _ in range(40):
            requests.get(url + "/missing", timeout=10)

        def all_reporting():
            current = _workers(url)
            counted = sum(w["http"]["errors"]["4xx"] for w in current)
            return current if len(current) == INSTANCES * WORKERS and counted == 40 else None

        workers = wait_for(all_reporting, timeout=15.0, what="every worker's heartbeat with the 40 404s")
        assert {w["instance"] for w in workers} == {f"test-{i.port}" for i in stack.instances}

        admin = requests.Session()
        admin.get(url + "/_test/admin-login", timeout=10)
        page = admin.get(url + "/admin/health", timeout=10)
        assert page.status_code == 200
        token = csrf_token(page)
        done = admin.post(
            url + "/admin/health/actions",
            data={"action": "reset_errors", "csrf_token": token, "confirm": "yes"},
            timeout=10,
        )
        assert done.status_code == 200 and "Done: Reset error counters" in done.text

        def all_applied():
            current = _workers(url)
            applied = [w for w in current if w["applied"].get("reset_errors") == 1]
            return current if len(applied) == INSTANCES * WORKERS else None

        workers = wait_for(all_applied, timeout=15.0, what="every worker to apply the reset")
        assert sum(w["http"]["errors"]["4xx"] for w in workers) == 0
        # Prometheus counters stay monotonic: the 404s are still counted there.
        metrics = requests.get(url + "/metrics", timeout=10).text
        assert 'quizapp_http_requests_total{status="404"} 40.0' in metrics
        assert f"quizapp_workers {float(INSTANCES * WORKERS)}" in metrics
        lint = subprocess.run(
            ["promtool", "check", "metrics"],
            input=metrics,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert lint.returncode == 0 and lint.stdout + lint.stderr == "", lint.stderr

    with pg_conn.cursor() as cur:
        cur.execute("SELECT actor, action FROM audit_log")
        assert cur.fetchall() == [("test-admin", "reset_errors")]
