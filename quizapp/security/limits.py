"""NAT-fair rate limits: which limits apply to a request, declared once, kept in Flask-Limiter's storage.

The unit of fairness is a person (a stored session), not an address:
- pages: RATELIMIT_DEFAULT per person and page, RATELIMIT_PERSON_TOTAL per person over all pages,
  RATELIMIT_ADDRESS_PAGES per address over all pages (a crowd's ceiling);
- no stored session: RATELIMIT_VISITOR_PAGES (GETs) and RATELIMIT_NEW_SESSIONS (POSTs, which may
  start a session) per address, so dropping the cookie buys nothing;
- POST endpoints (submit, email, login) per person; login also per address;
- addresses are IPv4 addresses or IPv6 /RATELIMIT_IPV6_PREFIX networks.
The check itself (one Redis round trip, with the session read) lives in ratecheck.py.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from flask import current_app, g
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address
from limits import RateLimitItem, parse_many

from .. import redis_conn
from ..errors import QuizError, render_error
from ..paths import is_infrastructure

log = logging.getLogger(__name__)

LIMITER_KEY = "quizapp.limiter"
RULES_KEY = "quizapp.limit_rules"
KEY_PREFIX = "quizapp"
# endpoint -> config key of its per-person POST limit (on top of the page limits).
ENDPOINT_LIMITS = {
    "quiz.submit": "RATELIMIT_SUBMIT",
    "quiz.email": "RATELIMIT_EMAIL",
    "admin_auth.login": "RATELIMIT_LOGIN",
}
# endpoint -> config key of a per-address POST limit as well (password guesses: cookies are free).
ADDRESS_ENDPOINT_LIMITS = {"admin_auth.login": "RATELIMIT_LOGIN"}
# endpoint -> config key of a per-person limit that replaces the page limits (polled by scripts).
POLLED_ENDPOINTS = {"ai.analysis_json": "RATELIMIT_POLL"}
# Server-to-server and signature-verified: a page limit would only drop paid events.
UNLIMITED_ENDPOINTS = ("payments.webhook",)
# Beside the infrastructure paths, favicon.ico and robots.txt: browsers and crawlers ask by themselves,
# with the first page of a visit, and must not halve a crowd's visitor budget (each is cheap here).
EXEMPT_PATHS = ("/favicon.ico", "/robots.txt")
SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS"))

ALWAYS, WITH_SESSION, WITHOUT_SESSION = "0", "1", "2"  # groups, as the Lua script reads them


class RateLimited(QuizError):
    """A request over one of its limits: a 429 page (or JSON) with Retry-After and X-RateLimit-*."""

    status = 429
    title = "Slow down a little"

    def __init__(self, *, amount: int, retry_after: int):
        super().__init__(
            "You have sent a lot of requests in a short time. Your answers are safe; "
            f"please wait about {retry_after} seconds and try again.",
            retry_after=retry_after,
        )
        self.amount = amount


@dataclass(frozen=True)
class Entry:
    """One rate limit item to check: which requests it counts, and under which key."""

    group: str  # ALWAYS, WITH_SESSION or WITHOUT_SESSION
    item: RateLimitItem
    scope: str
    per_person: bool  # keyed by the session (WITH_SESSION) rather than the address

    def key(self, limit_key: str) -> str:
        """limits' own key, as Flask-Limiter builds it: LIMITER/prefix/key/scope/amount/n/unit."""
        return self.item.key_for(KEY_PREFIX, limit_key, self.scope)


class LimitRules:
    """Every limit of the app, and which of them apply to an endpoint and method (cached)."""

    def __init__(self, config):
        self.per_page = config["RATELIMIT_DEFAULT"]
        self.pages = [
            *self._entries(config["RATELIMIT_ADDRESS_PAGES"], ALWAYS, "address-pages"),
            *self._entries(config["RATELIMIT_PERSON_TOTAL"], WITH_SESSION, "pages", per_person=True),
        ]
        self.visitor = self._entries(config["RATELIMIT_VISITOR_PAGES"], WITHOUT_SESSION, "visitor")
        self.new_session = self._entries(config["RATELIMIT_NEW_SESSIONS"], WITHOUT_SESSION, "new-session")
        self.endpoint_posts: dict[str, list[Entry]] = {}
        self.polled: dict[str, list[Entry]] = {}
        self.unlimited: set[str] = set()
        self._resolved: dict[tuple[str | None, str], tuple[Entry, ...]] = {}

    @staticmethod
    def _entries(value: str, group: str, scope: str, per_person=False) -> list[Entry]:
        return [Entry(group, item, scope, per_person) for item in parse_many(value)]

    def _per_person(self, value: str, scope: str) -> list[Entry]:
        # A person is their session; a request without one is counted by its address instead.
        return [
            *self._entries(value, WITH_SESSION, scope, per_person=True),
            *self._entries(value, WITHOUT_SESSION, scope),
        ]

    def limit_posts(self, endpoint: str, value: str, per_address: bool = False) -> None:
        entries = self._per_person(value, endpoint)
        if per_address:
            entries += self._entries(value, ALWAYS, endpoint + "@address")
        self.endpoint_posts.setdefault(endpoint, []).extend(entries)
        self._resolved.clear()

    def replace_page_limits(self, endpoint: str, value: str) -> None:
        self.polled[endpoint] = self._per_person(value, endpoint)
        self._resolved.clear()

    def exempt(self, endpoint: str) -> None:
        self.unlimited.add(endpoint)
        self._resolved.clear()

    def entries_for(self, endpoint: str | None, method: str) -> tuple[Entry, ...]:
        key = (endpoint, method)
        entries = self._resolved.get(key)
        if entries is None:
            entries = self._resolved[key] = tuple(self._resolve(endpoint, method))
        return entries

    def _resolve(self, endpoint: str | None, method: str) -> list[Entry]:
        if endpoint in self.unlimited or (endpoint or "").split(".")[-1] == "static":
            return []
        if endpoint in self.polled:
            return list(self.polled[endpoint])
        # Per page, as Flask-Limiter's defaults are: the scope is the endpoint.
        page = self._entries(self.per_page, WITH_SESSION, endpoint or "-", per_person=True)
        entries = [*self.pages, *page, *(self.visitor if method in SAFE_METHODS else self.new_session)]
        if method == "POST":
            entries += self.endpoint_posts.get(endpoint, [])
        return entries


def is_exempt_path(path: str) -> bool:
    return is_infrastructure(path) or path in EXEMPT_PATHS


def build_limiter(app) -> Limiter:
    """Flask-Limiter holds the Redis storage, the strategy and the in-memory fallback.

    Its own hooks are not used: the pipeline's limits step (ratecheck.check_request_limits)
    checks every limit of a request together with the session read, in one round trip.
    """
    config = app.config
    storage_uri, storage_options = redis_conn.limiter_storage(config)  # URL, TLS or Sentinel
    config.setdefault("RATELIMIT_STORAGE_URI", storage_uri)
    config.setdefault("RATELIMIT_STORAGE_OPTIONS", storage_options)
    config.setdefault("RATELIMIT_KEY_PREFIX", KEY_PREFIX)
    limiter = Limiter(
        key_func=get_remote_address,  # the real client address once ProxyFix has run
        default_limits=[],
        in_memory_fallback_enabled=True,
        enabled=config["RATELIMIT_ENABLED"],
        strategy=config["RATELIMIT_STRATEGY"],
    )
    limiter.init_app(app)
    _detach_hooks(app, limiter)
    app.extensions[LIMITER_KEY] = limiter
    app.extensions["quizapp.limiter_storage_dead"] = False
    app.extensions[RULES_KEY] = LimitRules(config)
    app.register_error_handler(RateLimitExceeded, handle_rate_limited)
    app.register_error_handler(RateLimited, handle_rate_limited)
    return limiter


def _detach_hooks(app, limiter: Limiter) -> None:
    """Take Flask-Limiter's own before/after/teardown hooks out: the declared pipeline checks limits."""
    for funcs in (
        app.before_request_funcs.get(None, []),
        app.after_request_funcs.get(None, []),
        app.teardown_request_funcs.get(None, []),
    ):
        funcs[:] = [
            f for f in funcs if getattr(f, "__self__", None) is not limiter and not _bound_to(f, limiter)
        ]


def _bound_to(func, limiter) -> bool:
    args = getattr(func, "args", ())  # functools.partial(Limiter.__inject_headers, limiter)
    return bool(args) and args[0] is limiter


def apply_endpoint_limits(app) -> list[str]:
    """Apply the configured limits to the endpoints that exist; return the names limited."""
    limiter = app.extensions.get(LIMITER_KEY)
    if limiter is None or not limiter.enabled:
        return []
    rules: LimitRules = app.extensions[RULES_KEY]
    applied = []
    for endpoint, config_key in ENDPOINT_LIMITS.items():
        if endpoint in app.view_functions:
            per_address = endpoint in ADDRESS_ENDPOINT_LIMITS
            rules.limit_posts(endpoint, app.config[config_key], per_address=per_address)
            applied.append(endpoint)
    for endpoint, config_key in POLLED_ENDPOINTS.items():
        if endpoint in app.view_functions:
            rules.replace_page_limits(endpoint, app.config[config_key])
            applied.append(endpoint)
    for endpoint in UNLIMITED_ENDPOINTS:
        if endpoint in app.view_functions:
            rules.exempt(endpoint)
            applied.append(endpoint)
    app.extensions["quizapp.limited_endpoints"] = applied
    log.info("ratelimit.applied", extra={"endpoints": ",".join(applied) or "-"})
    return applied


def limit_endpoint(app, endpoint: str, limit_value: str) -> None:
    """Limit POSTs to one endpoint per person, counted in addition to the page limits."""
    limiter = app.extensions[LIMITER_KEY]
    if limiter.enabled:
        app.extensions[RULES_KEY].limit_posts(endpoint, limit_value)


def handle_rate_limited(exc):
    if isinstance(exc, RateLimited):
        amount, retry_after = exc.amount, exc.retry_after
    else:  # a Flask-Limiter decorator somewhere (none in the app itself)
        current = current_app.extensions[LIMITER_KEY].current_limit
        amount = current.limit.amount if current else 0
        retry_after = max(1, int(current.reset_at - time.time())) if current else 60
        exc = RateLimited(amount=amount, retry_after=retry_after)
    response = render_error(429, exc.title, exc.message, retry_after)
    response.headers["X-RateLimit-Limit"] = str(amount)
    response.headers["X-RateLimit-Remaining"] = "0"
    response.headers["X-RateLimit-Reset"] = str(int(time.time()) + retry_after)
    return response


def add_rate_limit_headers(response):
    """After step: X-RateLimit-* on successes too, when RATELIMIT_HEADERS_ON_SUCCESS is set."""
    figures = g._get_current_object().get("rate_limit_figures")
    if figures and "X-RateLimit-Limit" not in response.headers:
        amount, remaining, reset = figures
        response.headers["X-RateLimit-Limit"] = str(amount)
        response.headers["X-RateLimit-Remaining"] = str(max(remaining, 0))
        response.headers["X-RateLimit-Reset"] = str(reset)
    return response


def _storage_dead(limiter: Limiter) -> bool:
    # Flask-Limiter's own flag for "using the in-memory fallback"; ratecheck sets it too.
    return bool(getattr(limiter, "_storage_dead", False))


def log_storage_transition(response):
    """After step: one log line when limits move to the in-memory fallback and one when they are back."""
    extensions = current_app.extensions
    limiter = extensions.get(LIMITER_KEY)
    if limiter is None:
        return response
    dead = _storage_dead(limiter)
    if dead != extensions["quizapp.limiter_storage_dead"]:
        extensions["quizapp.limiter_storage_dead"] = dead
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
