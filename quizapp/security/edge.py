"""Trusted proxy, request ids, security headers and the one log line per request."""

from __future__ import annotations

import itertools
import logging
import re
import time
import uuid
from urllib.parse import urlparse

from flask import current_app, g, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix

from ..metrics import WAITING_ROOM_ANSWERS

log = logging.getLogger("quizapp.request")

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
STRIPE_CHECKOUT_ORIGIN = "https://checkout.stripe.com"
HSTS = "max-age=31536000; includeSubDomains"
ROUTE_HEADER = "X-Quizapp-Route"


def route_pattern() -> str:
    """The matched rule ("/r/<public_id:public_id>"), never the path: ids and tokens stay out of logs."""
    rule = request.url_rule
    return rule.rule if rule is not None else "-"


def trust_proxy(app) -> None:
    """Believe X-Forwarded-For/-Proto only for the configured number of proxies in front of us."""
    hops = app.config["TRUSTED_PROXY_HOPS"]
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)


def content_security_policy(config) -> str:
    form_action = ["'self'"]
    if config.get("PAYMENT_PROVIDER") == "stripe":
        form_action.append(STRIPE_CHECKOUT_ORIGIN)
        # A fake Stripe in tests serves its checkout page from STRIPE_API_BASE.
        api_base = urlparse(config.get("STRIPE_API_BASE") or "")
        if api_base.scheme and api_base.netloc:
            form_action.append(f"{api_base.scheme}://{api_base.netloc}")
    directives = [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "frame-ancestors 'none'",
        "form-action " + " ".join(form_action),
        "base-uri 'self'",
        "object-src 'none'",
    ]
    return "; ".join(directives)


def start_request() -> None:
    """Pipeline step: start the request's one timer, name it (keep nginx's id when it is a plain
    token) and refuse oversized bodies."""
    state = g._get_current_object()  # each proxy lookup costs a context-variable walk: one each
    state.request_started = time.perf_counter()
    environ = request._get_current_object().environ
    incoming = environ.get("HTTP_X_REQUEST_ID", "")  # the header X-Request-ID, as WSGI names it
    state.request_id = incoming if _SANE_REQUEST_ID.match(incoming) else _new_request_id()
    # Werkzeug only enforces MAX_CONTENT_LENGTH when a view reads the body; refuse it up front.
    if "CONTENT_LENGTH" in environ:
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        length = request.content_length
        if limit and length is not None and length > limit:
            raise RequestEntityTooLarge()


# A random per-process prefix and a counter: unique ids without a getrandom call per request.
_ID_PREFIX = uuid.uuid4().hex[:16]
_id_counter = itertools.count(1)


def _new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter) & 0xFFFFFFFFFFFFFFFF:016x}"


def request_seconds() -> float:
    """Seconds since start_request: the one request timer (metrics and the log line read it)."""
    started = g.get("request_started")
    return time.perf_counter() - started if started is not None else 0.0


def install(app) -> None:
    """Trust the configured proxies and work out the security headers once."""
    trust_proxy(app)
    app.extensions["quizapp.security_headers"] = [
        ("Content-Security-Policy", content_security_policy(app.config)),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "strict-origin-when-cross-origin"),
        ("X-Frame-Options", "DENY"),
    ]


def add_security_headers(response):
    """After step: security headers, the request id, and the log line for notable requests."""
    app = current_app._get_current_object()
    state = g._get_current_object()
    req = request._get_current_object()
    added = [*app.extensions["quizapp.security_headers"]]  # no view sets any of these
    if req.is_secure:
        added.append(("Strict-Transport-Security", HSTS))
    request_id = state.get("request_id")
    if request_id:
        added.append(("X-Request-ID", request_id))
    # The access logs (gunicorn's, nginx's) write this instead of the path; nginx hides it.
    rule = req.url_rule
    added.append((ROUTE_HEADER, rule.rule if rule is not None else "-"))
    # Every value here is ours and already clean (constants, a request id that matched
    # _SANE_REQUEST_ID, a rule pattern): Headers.extend would check each name and value for
    # newlines again (two calls a header, ~12 µs a response), so append to its list directly.
    response.headers._list.extend(added)
    started = state.get("request_started")
    seconds = time.perf_counter() - started if started is not None else 0.0
    if (
        response.status_code < 400
        and seconds * 1000 < SLOW_REQUEST_MS
        and not app.config["REQUEST_LOG_ALL"]
        and not log.isEnabledFor(logging.DEBUG)
    ):
        return response  # most requests: nothing to log (gunicorn's access log has them)
    _log_request(response)
    return response


SLOW_REQUEST_MS = 1000


def _log_all() -> bool:
    return current_app.config["REQUEST_LOG_ALL"]


def _log_request(response) -> None:
    seconds = request_seconds()
    if response.status_code < 400 and seconds * 1000 < SLOW_REQUEST_MS and not _log_all():
        if not log.isEnabledFor(logging.DEBUG):
            return
    duration_ms = round(seconds * 1000, 1) if g.get("request_started") else None
    # gunicorn's access log already has every request with its id and duration; the app's own
    # line is for what needs attention (errors, slow answers) unless REQUEST_LOG_ALL is set.
    # The waiting room's 503s (X-Admission) are the expected answer under overload, counted by the
    # metrics and nginx's log: a line each would cost the door a write per answer when it is busiest.
    # (The address-wide "refused" 429 is still logged, as every other refusal is.)
    expected = response.headers.get("X-Admission") in WAITING_ROOM_ANSWERS
    notable = (response.status_code >= 400 and not expected) or (duration_ms or 0) >= SLOW_REQUEST_MS
    level = logging.INFO if notable or current_app.config["REQUEST_LOG_ALL"] else logging.DEBUG
    if not log.isEnabledFor(level):
        return
    log.log(
        level,
        "request",
        extra={
            "request_id": getattr(g, "request_id", "-"),
            "method": request.method,
            "route": route_pattern(),  # never the path or query: they carry ids and user data
            "status": response.status_code,
            "duration_ms": duration_ms,
        },
    )
