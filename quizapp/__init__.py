"""The quizapp application factory."""

from __future__ import annotations

import logging

from flask import Flask

from . import admission, db, links, log_format, metrics, redis_conn, security, validation
from .admin.auth import guard_admin_paths
from .config import Config
from .errors import QuizFlask, register_error_handlers
from .extensions import create_redis, csrf, init_sessions
from .security import edge, limits, ratecheck
from .sessions import require_session_store

log = logging.getLogger(__name__)


def create_app(config: Config | dict | None = None) -> Flask:
    """Build the app from a Config (default: the environment), wiring every extension once."""
    log_format.configure_logging()  # key=value records, secrets redacted: once per process
    if config is None:
        config = Config.from_env()
    settings = config.as_flask() if isinstance(config, Config) else dict(config)

    app = QuizFlask(__name__)
    app.config.update(settings)
    validation.register_converters(app)  # before blueprints: their rules name the id converters
    app.config["WTF_CSRF_ENABLED"] = settings.get("CSRF_ENABLED", True)

    app.extensions[redis_conn.EXTENSION] = create_redis(app.config)
    app.extensions["db_pool"] = db.create_pool(app.config)
    init_sessions(app, redis_conn.redis_client(app))
    csrf.init_app(app)
    links.init_app(app)  # templates' url_for: fixed links built once per worker
    register_error_handlers(app)
    metrics.init_app(app)  # per-worker status/latency counters for health and /metrics
    _register_blueprints(app)
    security.init_app(app)  # after blueprints: limits are applied by endpoint name
    admission.init_app(app)  # registers no hook: its hooks are declared below
    _declare_request_pipeline(app)
    return app


def _declare_request_pipeline(app: Flask) -> None:
    """Every request hook, in the order it runs: the one place that decides the order."""
    before_request = [
        edge.start_request,  # request id, the one request timer, body size
        admission.begin_request,  # bounded in flight by priority; the waiting room (1 round trip)
        ratecheck.check_request_limits,  # every limit + the session read: one Redis round trip
        require_session_store,  # the session, if the limits step did not read it; 503 on outage
        csrf.protect,  # signed double-submit token on unsafe methods; needs no session
        guard_admin_paths,  # /admin and /api/admin need an admin
    ]
    after_request = [  # in the order they run, on every response the app builds
        admission.finish_response,  # the signed admission cookie (ticket, pass, quiz started)
        csrf.set_cookie,  # the CSRF nonce, for a visitor given a token for the first time
        limits.add_rate_limit_headers,
        limits.log_storage_transition,
        edge.add_security_headers,  # headers, request id, log line (reads the one timer)
        metrics.count_response,  # status and latency counters (reads the one timer)
    ]
    teardown_request = [
        admission.end_request,  # gives the request's worker slot back, exactly once
    ]
    registered = {
        "before_request": app.before_request_funcs.get(None, []),
        "after_request": app.after_request_funcs.get(None, []),
        "teardown_request": app.teardown_request_funcs.get(None, []),
    }
    stray = {kind: funcs for kind, funcs in registered.items() if funcs}
    if stray:  # an extension registered a hook of its own: declare it here instead
        raise RuntimeError(f"request hooks outside the declared pipeline: {stray}")
    app.before_request_funcs[None] = before_request
    app.after_request_funcs[None] = list(reversed(after_request))  # Flask runs them last-first
    app.teardown_request_funcs[None] = list(reversed(teardown_request))


def _register_blueprints(app: Flask) -> None:
    from .admin.auth_views import bp as admin_auth_bp
    from .admin.views import bp as admin_bp
    from .ai.views import bp as ai_bp
    from .health.views import bp as health_bp
    from .mail.views import bp as mail_bp
    from .pages.views import bp as pages_bp
    from .payments.views import bp as payments_bp
    from .quiz.views import bp as quiz_bp

    app.register_blueprint(health_bp)
    app.register_blueprint(quiz_bp)
    app.register_blueprint(payments_bp)
    app.register_blueprint(admin_auth_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(ai_bp)
    app.register_blueprint(mail_bp)
    app.register_blueprint(pages_bp)
