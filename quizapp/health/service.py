"""Readiness checks against the app's real dependencies, each with a short timeout."""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, unquote, urlparse

import gevent
from flask import current_app

from .. import redis_conn

log = logging.getLogger(__name__)

# Anything that could carry a credential in a driver's message: user:password@ and key=value pairs.
_SECRETS = re.compile(r"(://)[^/@\s]*@|\b(password|passwd|pwd|secret|token)\s*=\s*\S+", re.IGNORECASE)


def url_target(url: str) -> str:
    """host:port (or the socket directory) of a service URL, never its user or password."""
    parsed = urlparse(url)
    socket_dir = dict(parse_qsl(parsed.query)).get("host", "")
    host = parsed.netloc.rpartition("@")[2] or socket_dir
    return unquote(host)


def describe_failure(exc: BaseException, target: str = "") -> str:
    """'Type: first line of the root cause (target)', e.g. refused host and port; no credentials."""
    root = exc
    while root.__cause__ is not None or (root.__context__ is not None and not root.__suppress_context__):
        root = root.__cause__ or root.__context__
    detail = next((line.strip() for line in str(root).splitlines() if line.strip()), "")
    detail = _SECRETS.sub(lambda m: (m.group(1) + "***@") if m.group(1) else m.group(2) + "=***", detail)
    name = type(exc).__name__ if root is exc else f"{type(exc).__name__} ({type(root).__name__})"
    where = f" ({target})" if target and target not in detail else ""
    return f"{name}: {detail[:200] or 'unavailable'}{where}"


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
    redis_conn.redis_client().ping()


def readiness() -> tuple[bool, dict]:
    """Return (ready, {dependency: "ok" or reason}) checking Postgres and Redis concurrently."""
    timeout = current_app.config["READY_TIMEOUT"]
    app = current_app._get_current_object()

    def run(check, url, *args):
        with app.app_context():
            try:
                check(*args)
            except Exception as exc:  # any failure means "not ready"; the reason is reported
                return describe_failure(exc, url_target(url))
        return "ok"

    jobs = {
        "postgres": gevent.spawn(run, _check_postgres, app.config["DATABASE_URL"], timeout),
        "redis": gevent.spawn(run, _check_redis, app.config["REDIS_URL"]),
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
