"""The shared extension objects (Redis client, CSRF) and the session set-up."""

from __future__ import annotations

import redis

from . import redis_conn
from .redis_conn import redis_client
from .security.csrf import DoubleSubmitCSRF
from .sessions import REFRESHED_AT_KEY, SESSION_COOKIE_NAME, init_sessions

__all__ = [
    "REFRESHED_AT_KEY",
    "SESSION_COOKIE_NAME",
    "create_redis",
    "csrf",
    "init_sessions",
    "redis_client",
]

csrf = DoubleSubmitCSRF()


def create_redis(config) -> redis.Redis:
    return redis_conn.create_client(config)  # plain URL, TLS or Sentinel: see redis_conn
