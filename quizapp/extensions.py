"""The shared extension objects (Redis client, sessions, limiter, CSRF) and their init_app."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import redis
from flask import current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_session.redis import RedisSessionInterface
from flask_wtf.csrf import CSRFProtect

from . import redis_conn
from .errors import RedisUnavailable

log = logging.getLogger(__name__)

SESSION_COOKIE_NAME = "bizmodel.sid"
SESSION_ERROR_KEY = "quizapp.session_error"

csrf = CSRFProtect()
limiter = Limiter(key_func=get_remote_address)


REFRESHED_AT_KEY = "_rt"  # epoch seconds of the last write, kept inside the session


class ResilientRedisSessionInterface(RedisSessionInterface):
    """Redis sessions that turn a Redis outage into a 503 page instead of a traceback.

    Rolling expiry without a write per request: a session is written when it changes, and
    otherwise at most every SESSION_REFRESH_SECONDS of activity, each write renewing the full
    lifetime of both the Redis key and the cookie.
    """

    def should_set_storage(self, app, session) -> bool:
        if not session.modified:
            refreshed = session.get(REFRESHED_AT_KEY, 0)
            if time.time() - refreshed < app.config["SESSION_REFRESH_SECONDS"]:
                return False
        session[REFRESHED_AT_KEY] = int(time.time())  # marks it modified: the cookie is renewed too
        return True

    def open_session(self, app, request):
        try:
            return super().open_session(app, request)
        except redis.exceptions.RedisError:
            log.warning("session.redis_unavailable")
            request.environ[SESSION_ERROR_KEY] = True
            return self.make_null_session(app)

    def _upsert_session(self, session_lifetime, session, store_id) -> None:
        # With REDIS_WAIT_REPLICAS, the cookie goes out once a replica has the session too.
        replicas, timeout_ms = redis_conn.replicas_wanted(current_app.config)
        value = self.serializer.encode(session)
        ttl = int(session_lifetime.total_seconds())
        redis_conn.set_replicated(
            self.client, store_id, value, ex=ttl, replicas=replicas, timeout_ms=timeout_ms
        )

    def save_session(self, app, session, response):
        try:
            super().save_session(app, session, response)
        except redis.exceptions.RedisError as exc:
            raise RedisUnavailable() from exc


def create_redis(config) -> redis.Redis:
    return redis_conn.create_client(config)  # plain URL, TLS or Sentinel: see redis_conn


def init_sessions(app, client: redis.Redis):
    app.config.update(
        SESSION_COOKIE_NAME=SESSION_COOKIE_NAME,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=app.config["SESSION_COOKIE_SECURE"],
        PERMANENT_SESSION_LIFETIME=timedelta(hours=app.config["SESSION_LIFETIME_HOURS"]),
        # Rolling refresh is throttled by ResilientRedisSessionInterface.should_set_storage.
        SESSION_REFRESH_EACH_REQUEST=False,
    )
    # 24 random bytes (192 bits) in 32 URL-safe characters: unguessable, and a short Redis key.
    app.session_interface = ResilientRedisSessionInterface(
        app, client=client, key_prefix="s:", permanent=True, sid_length=24
    )

    @app.before_request
    def refuse_without_session_store():
        if request.environ.get(SESSION_ERROR_KEY) and not _session_optional(request.path):
            raise RedisUnavailable()


def _session_optional(path: str) -> bool:
    return path in ("/healthz", "/readyz", "/metrics") or path.startswith("/static/")
