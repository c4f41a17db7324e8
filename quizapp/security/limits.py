"""Rate limits in Redis (Flask-Limiter), applied by endpoint name, with an in-memory fallback."""

from __future__ import annotations

import logging
import time

from flask import current_app, request
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address

from .. import redis_conn
from ..errors import render_error

log = logging.getLogger(__name__)

LIMITER_KEY = "quizapp.limiter"
# endpoint -> config key of its stricter POST limit (on top of the per-IP page default).
ENDPOINT_LIMITS = {
    "quiz.submit": "RATELIMIT_SUBMIT",
    "quiz.email": "RATELIMIT_EMAIL",
    "admin_auth.login": "RATELIMIT_LOGIN",
}
# endpoint -> config key of a limit that replaces the page default (pages polled by scripts).
POLLED_ENDPOINTS = {"ai.analysis_json": "RATELIMIT_POLL"}
# Server-to-server and signature-verified: the per-IP page limit would only drop paid events.
UNLIMITED_ENDPOINTS = ("payments.webhook",)
EXEMPT_PATHS = ("/healthz", "/readyz", "/metrics")
EXEMPT_PREFIXES = ("/api/health/", "/static/")


def _is_exempt_path() -> bool:
    return request.path in EXEMPT_PATHS or request.path.startswith(EXEMPT_PREFIXES)


def build_limiter(app) -> Limiter:
    """One limiter per app (tests build many apps; Flask-Limiter keeps storage on the object)."""
    config = app.config
    storage_uri, storage_options = redis_conn.limiter_storage(config)  # URL, TLS or Sentinel
    config.setdefault("RATELIMIT_STORAGE_URI", storage_uri)
    config.setdefault("RATELIMIT_STORAGE_OPTIONS", storage_options)
    # X-RateLimit-* on every answer costs a Redis round trip per request (the window's stats);
    # refusals always carry them (handle_rate_limited), successes only when configured.
    config.setdefault("RATELIMIT_HEADERS_ENABLED", config.get("RATELIMIT_HEADERS_ON_SUCCESS", False))
    config.setdefault("RATELIMIT_KEY_PREFIX", "quizapp")
    limiter = Limiter(
        key_func=get_remote_address,  # the real client address once ProxyFix has run
        in_memory_fallback_enabled=True,
        enabled=config["RATELIMIT_ENABLED"],
    )
    limiter.init_app(app)
    limiter.request_filter(_is_exempt_path)
    app.extensions[LIMITER_KEY] = limiter
    app.extensions["quizapp.limiter_storage_dead"] = False
    _check_limits_first(app, limiter)
    app.register_error_handler(RateLimitExceeded, handle_rate_limited)
    app.after_request(_log_storage_transition)
    return limiter


def _check_limits_first(app, limiter: Limiter) -> None:
    """Count the page budget before CSRF or session checks, so requests they refuse still count.

    Endpoint limits (submit, email, login) run when the view is called, i.e. after CSRF passed:
    a password guess needs a valid token, so every guess is counted.
    """
    funcs = app.before_request_funcs.setdefault(None, [])
    check = limiter._check_request_limit
    if check in funcs:
        funcs.remove(check)
        funcs.insert(0, check)


def apply_endpoint_limits(app) -> list[str]:
    """Apply the configured limits to the endpoints that exist; return the names limited."""
    limiter = app.extensions.get(LIMITER_KEY)
    if limiter is None or not limiter.enabled:
        return []
    applied = []
    for endpoint, config_key in ENDPOINT_LIMITS.items():
        if endpoint in app.view_functions:
            limit_endpoint(app, endpoint, app.config[config_key])
            applied.append(endpoint)
    for endpoint, config_key in POLLED_ENDPOINTS.items():
        if endpoint in app.view_functions:
            view = app.view_functions[endpoint]
            app.view_functions[endpoint] = limiter.limit(app.config[config_key], override_defaults=True)(view)
            applied.append(endpoint)
    for endpoint in UNLIMITED_ENDPOINTS:
        if endpoint in app.view_functions:
            limiter.exempt(app.view_functions[endpoint])
            applied.append(endpoint)
    app.extensions["quizapp.limited_endpoints"] = applied
    log.info("ratelimit.applied", extra={"endpoints": ",".join(applied) or "-"})
    return applied


def limit_endpoint(app, endpoint: str, limit_value: str) -> None:
    """Limit POSTs to one endpoint per client IP, counted in addition to the page default."""
    limiter = app.extensions[LIMITER_KEY]
    if not limiter.enabled:
        return
    view = app.view_functions[endpoint]
    app.view_functions[endpoint] = limiter.limit(limit_value, methods=["POST"], override_defaults=False)(view)


def handle_rate_limited(exc: RateLimitExceeded):
    limiter = current_app.extensions[LIMITER_KEY]
    current = limiter.current_limit
    retry_after = max(1, int(current.reset_at - time.time())) if current else 60
    response = render_error(
        429,
        "Slow down a little",
        "You have sent a lot of requests in a short time. Your answers are safe; "
        f"please wait about {retry_after} seconds and try again.",
        retry_after,
    )
    if current:
        response.headers.setdefault("X-RateLimit-Limit", str(current.limit.amount))
        response.headers.setdefault("X-RateLimit-Remaining", "0")
        response.headers.setdefault("X-RateLimit-Reset", str(int(current.reset_at)))
    return response


def _storage_dead(limiter: Limiter) -> bool:
    # Flask-Limiter exposes no public flag for "using the in-memory fallback".
    return bool(getattr(limiter, "_storage_dead", False))


def _log_storage_transition(response):
    limiter = current_app.extensions.get(LIMITER_KEY)
    if limiter is None:
        return response
    dead = _storage_dead(limiter)
    if dead != current_app.extensions["quizapp.limiter_storage_dead"]:
        current_app.extensions["quizapp.limiter_storage_dead"] = dead
        if dead:
            log.warning("ratelimit.storage_fallback", extra={"storage": "memory-fallback"})
        else:
            log.info("ratelimit.storage_recovered", extra={"storage": "redis"})
    return response


def status(app) -> dict:
    limiter = app.extensions.get(LIMITER_KEY)
    if limiter is None or not limiter.enabled:
        return {"storage": "disabled", "fallback": False, "enabled": False}
    dead = _storage_dead(limiter)
    return {
        "storage": "memory-fallback" if dead else "redis",
        "fallback": dead,
        "enabled": True,
        "strategy": app.config["RATELIMIT_STRATEGY"],
        "default": app.config["RATELIMIT_DEFAULT"],
    }
