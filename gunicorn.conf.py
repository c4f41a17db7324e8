"""Gunicorn settings, every knob from the environment (see README: Configuration)."""

import gc
import multiprocessing
import os
import time
from datetime import timedelta


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


def _env_ints(name, default, count, minimum=1):
    raw = os.environ.get(name) or default
    try:
        values = tuple(int(part) for part in raw.split(","))
    except ValueError:
        raise SystemExit(f"{name} must be {count} comma-separated integers, got {raw!r}") from None
    if len(values) != count or min(values) < minimum:
        raise SystemExit(f"{name} must be {count} comma-separated integers >= {minimum}, got {raw!r}")
    return values


# Loopback by default: nginx is the only thing that should talk to an instance.
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000").split(",")


def _pywsgi_worker():
    """gunicorn's gevent worker on gevent's own HTTP server (pywsgi), with what gunicorn's request
    loop did that pywsgi does not: the keep-alive bound, "Connection: close" once the worker is
    stopping, max_requests, the pre/post_request hooks, and an access log with the route header.

    Why not gunicorn's default gevent worker: its pure-Python parser, environ and response writer
    cost ~20 % of a worker's CPU per request more (bench/efficiency.py's question page: 208 against
    172 µs, wrk on the other core); pywsgi reads the request line and headers with the socket
    file's C readline. Each response's head goes out with its first body bytes in one write.
    """
    from types import SimpleNamespace

    from gunicorn.workers.ggevent import GeventPyWSGIWorker, GeventResponse, PyWSGIHandler, PyWSGIServer

    class Handler(PyWSGIHandler):
        worker = None  # this process's worker (one per process), set as it starts
        hooks = False  # pre_request or post_request set (bench/route_cpu.conf.py): call them

        def handle(self):
            # gunicorn's keep-alive bound: a connection idle this long is closed (nginx closes its
            # idle upstream connections sooner, so it never sends a request on one closing here).
            self.socket.settimeout(self.worker.cfg.keepalive)
            super().handle()

        def handle_one_request(self):
            self.environ = None  # a request refused before its environ is built is not logged as the last one
            return super().handle_one_request()

        def get_environ(self):
            env = super().get_environ()
            env.setdefault("REMOTE_ADDR", "")  # a Unix-socket peer has no address; gunicorn's is ""
            return env

        def _write_with_headers(self, data):
            """pywsgi's, with the head and the first body bytes in one write (pywsgi sends them in
            two): every write to nginx is a syscall and a wake-up of the other process."""
            self.headers_sent = True
            self.finalize_headers()
            towrite = bytearray(b"HTTP/1.1 ")
            towrite += self.status
            towrite += b"\r\n"
            for header, value in self.response_headers:
                towrite += header
                towrite += b": "
                towrite += value
                towrite += b"\r\n"
            towrite += b"\r\n"
            if data and self.response_use_chunked:
                towrite += b"%x\r\n" % len(data)
                towrite += data
                towrite += b"\r\n"
            elif data:
                towrite += data
            self._sendall(towrite)

        def start_response(self, status, headers, exc_info=None):
            if not self.worker.alive:  # stopping: nginx must not send another request on this one
                headers = [*headers, ("Connection", "close")]
            return super().start_response(status, headers, exc_info)

        def handle_one_response(self):
            worker = self.worker
            worker.nr += 1
            if worker.nr >= worker.max_requests and worker.alive:
                worker.log.info("Autorestarting worker after current request.")
                worker.alive = False
            if not self.hooks:
                super().handle_one_response()
                return
            request = SimpleNamespace(
                method=self.command, path=self.path, uri=self.path, headers=self.headers
            )
            worker.cfg.pre_request(worker, request)
            try:
                super().handle_one_response()
            finally:
                worker.cfg.post_request(worker, request, self.environ, self._response())

        def _response(self) -> GeventResponse:
            """The response as gunicorn's hooks and access log read it: str status and headers."""
            status = self.status.decode("latin-1") if isinstance(self.status, bytes) else self.status or ""
            headers = [
                (k.decode("latin-1"), v.decode("latin-1")) if isinstance(k, bytes) else (k, v)
                for k, v in getattr(self, "response_headers", None) or ()
            ]
            return GeventResponse(status, headers, self.response_length)

        def log_request(self):
            if not self.worker.cfg.accesslog or self.environ is None:
                return  # off, or a request pywsgi refused unparsed (logged to the error log)
            elapsed = timedelta(seconds=(self.time_finish or time.time()) - self.time_start)
            self.server.log.access(self._response(), self.headers.items(), self.environ, elapsed)

    class Server(PyWSGIServer):
        pass

    class Worker(GeventPyWSGIWorker):
        server_class = Server
        wsgi_handler = Handler

        def init_process(self):
            Handler.worker = self
            Handler.hooks = any(
                getattr(self.cfg.settings[name].get(), "__module__", None) != "gunicorn.config"
                for name in ("pre_request", "post_request")
            )
            if self.cfg.workers > 1:
                Server.max_accept = 1  # as gunicorn's own gevent worker: spread connections over workers
            super().init_process()

    return Worker


worker_class = _pywsgi_worker()
workers = _env_int("GUNICORN_WORKERS", multiprocessing.cpu_count(), minimum=1)
worker_connections = _env_int("GUNICORN_WORKER_CONNECTIONS", 1000, minimum=1)
backlog = _env_int("GUNICORN_BACKLOG", 2048, minimum=1)
# Off by default (a remedy for a leak). A recycling worker loses no request: it stops accepting,
# answers what nginx still sends on its open connections with "Connection: close", then exits.
max_requests = _env_int("GUNICORN_MAX_REQUESTS", 0)
max_requests_jitter = _env_int("GUNICORN_MAX_REQUESTS_JITTER", 0)
# CPython's collector thresholds in each worker (gc.set_threshold), set after boot. CPython's own are
# 700,10,10. A worker's per-visitor caches (parsed cookies, signed nonces, limit keys: a few thousand
# entries each) churn under a crowd, so objects reach the oldest generation fast and a full collection
# of the ~40,000 live objects (30-40 ms during which the worker answers nobody) ran every 5-6 s at the
# knee. 100 for the oldest generation runs it about every minute: the collector's CPU fell from 2.0 %
# to 1.2-1.5 % of a worker's, with the same objects alive (docs/benchmarks.md). Minimum 1: 0 would stop it.
_gc_threshold = _env_ints("GUNICORN_GC_THRESHOLD", "700,10,100", 3)
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
    """Set the collector's thresholds; open this worker's own Postgres connections and start its
    health heartbeat greenlet."""
    gc.set_threshold(*_gc_threshold)  # the app is loaded by now: boot ran with CPython's own
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
