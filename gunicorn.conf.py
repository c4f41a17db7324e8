"""Gunicorn settings, every knob from the environment (see README: Configuration)."""

import gc
import multiprocessing
import os


# Not quizapp.config_readers.integer: importing it runs quizapp/__init__ (Flask, redis, psycopg2) in the
# gunicorn master before wsgi.py's gevent monkey-patching, and gunicorn wants SystemExit, not ConfigError.
def _env_int(name, default, minimum=0):
    raw = os.environ.get(name)
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SystemExit(f"{name} must be >= {minimum}, got {value}")
    return value


# Loopback by default: nginx is the only thing that should talk to an instance.
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000").split(",")


class _OneWriteResponseSocket:
    """The client socket as a response sees it: the headers wait for the first body bytes and go
    out in the same write. gunicorn writes them separately, and every write to nginx is a syscall
    and a wake-up of the other process: about a tenth of a worker's CPU at the bench's knee."""

    __slots__ = ("_sock", "_headers")

    def __init__(self, sock):
        self._sock = sock
        self._headers = None

    def sendall(self, data):
        if self._headers is None:
            self._headers = bytes(data)  # the first write of a response is its head
            return
        if self._headers:
            data, self._headers = self._headers + data, b""
        self._sock.sendall(data)

    def flush(self):
        if self._headers:
            head, self._headers = self._headers, b""
            self._sock.sendall(head)

    def __getattr__(self, name):  # sendfile, fileno, shutdown, close...: head first, then the real one
        self.flush()
        return getattr(self._sock, name)


def _one_write_worker():
    from gunicorn.workers.ggevent import GeventWorker

    class OneWriteGeventWorker(GeventWorker):
        """gunicorn's gevent worker, each response's head and first body bytes in one write."""

        def handle_request(self, listener_name, req, sock, addr):
            wrapped = _OneWriteResponseSocket(sock)
            try:
                super().handle_request(listener_name, req, wrapped, addr)
            finally:
                wrapped.flush()  # a response without a body (HEAD, 304) still gets its head

    return OneWriteGeventWorker


worker_class = _one_write_worker()
workers = _env_int("GUNICORN_WORKERS", multiprocessing.cpu_count(), minimum=1)
worker_connections = _env_int("GUNICORN_WORKER_CONNECTIONS", 1000, minimum=1)
backlog = _env_int("GUNICORN_BACKLOG", 2048, minimum=1)
# Off by default: a recycled gevent worker resets the keep-alive connections nginx has just
# written a request to, and nginx cannot retry a POST elsewhere (the bench saw 502s at each recycle).
max_requests = _env_int("GUNICORN_MAX_REQUESTS", 0)
max_requests_jitter = _env_int("GUNICORN_MAX_REQUESTS_JITTER", 0)
timeout = _env_int("GUNICORN_TIMEOUT", 30, minimum=1)
graceful_timeout = _env_int("GUNICORN_GRACEFUL_TIMEOUT", 20, minimum=1)
# Longer than nginx's upstream keepalive_timeout (4s), so nginx always closes an idle
# connection first and never sends a request on one gunicorn is closing.
keepalive = _env_int("GUNICORN_KEEPALIVE", 5, minimum=1)
proc_name = os.environ.get("GUNICORN_PROC_NAME", "quizapp")
pidfile = os.environ.get("GUNICORN_PIDFILE") or None
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None
errorlog = os.environ.get("GUNICORN_ERROR_LOG", "-")
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# Trust X-Forwarded-* only from the local nginx.
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
# Request id (set by nginx or the app) and duration in microseconds on every access line. The
# route pattern the app names in X-Quizapp-Route, never the path or query string: those carry
# public ids, checkout session ids and emails.
access_log_format = (
    '%(h)s "%(m)s %({x-quizapp-route}o)s %(H)s" %(s)s %(b)s rid=%({x-request-id}i)s dur_us=%(D)s '
    'pid=%(p)s ua="%(a)s"'
)
# Gunicorn >= 25 opens a control socket in ~/.gunicorn by default: every instance of one user
# would share that path. Off unless GUNICORN_CONTROL_SOCKET names a per-instance path.
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", "")
control_socket_disable = not control_socket
if not control_socket:
    del control_socket
# Worker liveness files in RAM when possible, not on a possibly slow or read-only disk.
_shm = "/dev/shm"  # nosec B108 - gunicorn's own liveness files, not user data
worker_tmp_dir = os.environ.get("GUNICORN_WORKER_TMP_DIR") or (_shm if os.access(_shm, os.W_OK) else None)


def _flask_app(worker):
    """The quizapp Flask app this worker serves, or None (another WSGI app, or it failed to load)."""
    # A worker whose app failed to import has no .wsgi: worker_exit must not add a second traceback.
    app = getattr(worker, "wsgi", None)
    extensions = getattr(app, "extensions", None)
    if not extensions or "db_pool" not in extensions:
        return None
    from quizapp import redis_conn  # imported with the app by now: free here, unlike at the top

    return app if redis_conn.EXTENSION in extensions else None


def post_worker_init(worker):
    """Open this worker's own Postgres connections and start its health heartbeat greenlet."""
    app = _flask_app(worker)
    if app is None:
        return
    pool = app.extensions.get("db_pool")
    if pool is not None:
        pool.warm()
    from quizapp.health.heartbeat import start_heartbeat

    _warm_up(app)
    start_heartbeat(app)
    # Everything loaded so far (Flask, templates, modules: ~120k objects) lives as long as the
    # worker. Out of the collector's sight, a full collection takes well under a millisecond
    # instead of 50-200 ms during which the worker answers nobody (a p99 spike at the knee).
    gc.freeze()


def _warm_up(app):
    """What a worker would otherwise do on first use, blocking its event loop for everyone:
    importing the OpenAI client and its HTTP stack (~0.5 s), the client's first request asking
    the platform for its processor (`uname -p`, a subprocess fork of the whole worker), and
    compiling each template (tens of ms each)."""
    import platform

    from quizapp.ai.runtime import get_runtime

    platform.platform()  # cached by the platform module from now on
    for name in app.jinja_env.list_templates(extensions=("html", "txt")):
        app.jinja_env.get_template(name)  # compiled now, not by the first visitor to need it
    try:
        get_runtime(app)
    except Exception as exc:  # noqa: BLE001 - no AI key or a bad one: first use reports it, as before
        app.logger.info("ai runtime not built at boot: %s", type(exc).__name__)


def worker_exit(server, worker):
    """Withdraw this worker's heartbeat so the cluster view drops it at once."""
    app = _flask_app(worker)
    if app is None:
        return
    from quizapp.health.heartbeat import stop_heartbeat

    stop_heartbeat(app)
