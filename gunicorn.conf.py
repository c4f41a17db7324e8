"""Gunicorn settings, every knob from the environment (see README: Configuration)."""

import multiprocessing
import os


def _env_int(name, default):
    raw = os.environ.get(name)
    try:
        return int(raw) if raw else default
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from None


bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000").split(",")
worker_class = "gevent"
workers = _env_int("GUNICORN_WORKERS", multiprocessing.cpu_count())
worker_connections = _env_int("GUNICORN_WORKER_CONNECTIONS", 1000)
backlog = _env_int("GUNICORN_BACKLOG", 2048)
max_requests = _env_int("GUNICORN_MAX_REQUESTS", 10000)
max_requests_jitter = _env_int("GUNICORN_MAX_REQUESTS_JITTER", 1000)
timeout = _env_int("GUNICORN_TIMEOUT", 30)
graceful_timeout = _env_int("GUNICORN_GRACEFUL_TIMEOUT", 20)
keepalive = _env_int("GUNICORN_KEEPALIVE", 5)
proc_name = os.environ.get("GUNICORN_PROC_NAME", "quizapp")
pidfile = os.environ.get("GUNICORN_PIDFILE") or None
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# Request id (set by nginx or the app) and duration in microseconds on every access line.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s rid=%({x-request-id}o)s dur_us=%(D)s'


def post_worker_init(worker):
    """Open this worker's own Postgres connections once it has loaded the app."""
    app = getattr(worker.wsgi, "quizapp_app", None) or worker.wsgi
    pool = getattr(app, "extensions", {}).get("db_pool")
    if pool is not None:
        pool.warm()
