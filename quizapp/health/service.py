"""Readiness checks against the app's real dependencies, each with a short timeout."""

from __future__ import annotations

import logging

import gevent
from flask import current_app

log = logging.getLogger(__name__)


def _check_postgres(timeout: float) -> None:
    pool = current_app.extensions["db_pool"]
    conn = pool.acquire(timeout=timeout)
    broken = False
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        conn.rollback()
    except Exception:
        broken = True
        raise
    finally:
        pool.release(conn, discard=broken)


def _check_redis() -> None:
    current_app.extensions["redis"].ping()


def readiness() -> tuple[bool, dict]:
    """Return (ready, {dependency: "ok" or reason}) checking Postgres and Redis concurrently."""
    timeout = current_app.config["READY_TIMEOUT"]
    app = current_app._get_current_object()

    def run(check, *args):
        with app.app_context():
            try:
                check(*args)
            except Exception as exc:  # any failure means "not ready"; the reason is reported
                return f"{type(exc).__name__}: unavailable"
        return "ok"

    jobs = {
        "postgres": gevent.spawn(run, _check_postgres, timeout),
        "redis": gevent.spawn(run, _check_redis),
    }
    gevent.joinall(list(jobs.values()), timeout=timeout + 0.5)
    checks = {}
    for name, job in jobs.items():
        if not job.ready():
            job.kill(block=False)
            checks[name] = "timeout"
        else:
            checks[name] = job.value
    return all(v == "ok" for v in checks.values()), checks
