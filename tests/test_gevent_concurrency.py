"""One gevent worker serves concurrent slow queries side by side (monkey-patching + psycogreen)."""

import time

import gevent
import pytest
import requests

from devstack.servers import Gunicorn


@pytest.mark.integration
def test_two_pg_sleeps_on_one_worker_overlap():
    with Gunicorn("tests.support.sleepapp:app", workers=1) as server:
        requests.get(server.url + "/_test/pg-sleep", timeout=10)  # warm the worker
        started = time.monotonic()
        jobs = [gevent.spawn(requests.get, server.url + "/_test/pg-sleep", timeout=10) for _ in range(2)]
        gevent.joinall(jobs, raise_error=True)
        elapsed = time.monotonic() - started
    assert [j.value.status_code for j in jobs] == [200, 200]
    print(f"\n[figure] two concurrent pg_sleep(1) on one gevent worker: {elapsed:.2f}s")
    assert elapsed < 1.6
