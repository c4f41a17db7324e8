"""Edge protection: rate limits, trusted proxy, the CSRF error page, security headers, request ids.

Contract for other packages:
- init_app(app): called by create_app after blueprints are registered (limits are applied by
  endpoint name: quiz.submit, quiz.email, admin_auth.login; payments.webhook is not limited).
  It registers no request hooks: create_app declares the request pipeline that uses these parts.
- limiter_status() -> dict: {"storage": "redis" | "memory-fallback" | "disabled", ...} for health.
"""

from __future__ import annotations

import logging
from urllib.parse import urlparse

from flask import current_app, g, make_response, render_template, request
from flask_wtf.csrf import CSRFError

from ..errors import render_error, wants_json
from . import edge, limits, ratecheck
from .limits import limit_endpoint

log = logging.getLogger(__name__)

__all__ = ["init_app", "limiter_status", "limit_endpoint"]


def init_app(app) -> None:
    """Wire every edge protection into the app; call once blueprints are registered."""
    limits.build_limiter(app)
    edge.install(app)
    limits.apply_endpoint_limits(app)
    ratecheck.init_app(app)
    app.register_error_handler(CSRFError, handle_csrf_error)


def limiter_status(app=None) -> dict:
    return limits.status(app or current_app)


def _same_origin_referrer() -> str | None:
    referrer = urlparse(request.referrer or "")
    if referrer.netloc and referrer.netloc == request.host and referrer.scheme in ("http", "https"):
        return referrer.path or "/"
    return None


def handle_csrf_error(exc: CSRFError):
    """A stale or missing form token: explain, keep the session (and answers), offer the way back."""
    log.info("csrf.rejected", extra={"route": edge.route_pattern(), "reason": exc.description})
    title = "This form has expired"
    message = (
        "For your security each form carries a token, and this one was missing or out of date. "
        "Your answers so far are kept: go back, reload the page and send it again."
    )
    if wants_json():
        return render_error(400, title, message)
    html = render_template(
        "security/csrf_error.html",
        status=400,
        title=title,
        message=message,
        back_url=_same_origin_referrer() or "/",
        request_id=g.get("request_id"),
    )
    return make_response(html, 400)
