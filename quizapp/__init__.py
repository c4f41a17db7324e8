"""The quizapp application factory."""

from __future__ import annotations

import logging

from flask import Flask

from . import admission, db, metrics, security
from .config import Config
from .errors import register_error_handlers
from .extensions import create_redis, csrf, init_sessions

log = logging.getLogger(__name__)


def create_app(config: Config | dict | None = None) -> Flask:
    """Build the app from a Config (default: the environment), wiring every extension once."""
    if config is None:
        config = Config.from_env()
    settings = config.as_flask() if isinstance(config, Config) else dict(config)

    app = Flask(__name__)
    app.config.update(settings)
    app.config["WTF_CSRF_ENABLED"] = settings.get("CSRF_ENABLED", True)
    app.config["WTF_CSRF_TIME_LIMIT"] = None  # the token lives as long as the session

    app.extensions["redis"] = create_redis(app.config)
    app.extensions["db_pool"] = db.create_pool(app.config)
    init_sessions(app, app.extensions["redis"])
    csrf.init_app(app)
    register_error_handlers(app)
    metrics.init_app(app)  # per-worker status/latency counters for health and /metrics
    _register_blueprints(app)
    security.init_app(app)  # after blueprints: limits are applied by endpoint name
    admission.init_app(app)
    _place_admission_hooks(app)
    return app


def _place_admission_hooks(app: Flask) -> None:
    """Admission runs right after the request id: a waiting-room answer costs nothing more."""
    from .security.edge import start_request

    hooks = app.before_request_funcs.setdefault(None, [])
    hooks.insert(hooks.index(start_request) + 1, admission.begin_request)
    app.after_request(admission.finish_response)
    app.teardown_request(admission.end_request)


def _register_blueprints(app: Flask) -> None:
    from .admin.auth_views import bp as admin_auth_bp
    from .admin.views import bp as admin_bp
    from .ai.views import bp as ai_bp
    from .health.views import bp as health_bp
    from .payments.views import bp as payments_bp
    from .quiz.views import bp as quiz_bp

    app.register_blueprint(health_bp)
    app.register_blueprint(quiz_bp)
    app.register_blueprint(payments_bp)
    app.register_blueprint(admin_auth_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(ai_bp)
