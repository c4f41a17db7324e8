"""The shared extension objects (Redis client, CSRF) and the session set-up."""

from __future__ import annotations

import redis

from .security.csrf import DoubleSubmitCSRF
from .sessions import REFRESHED_AT_KEY, SESSION_COOKIE_NAME, init_sessions

__all__ = ["REFRESHED_AT_KEY", "SESSION_COOKIE_NAME", "create_redis", "csrf", "init_sessions"]

csrf = DoubleSubmitCSRF()


def create_redis(config) -> redis.Redis:
    return redis.Redis.from_url(
        config["REDIS_URL"],
        socket_timeout=config["REDIS_SOCKET_TIMEOUT"],
        socket_connect_timeout=config["REDIS_SOCKET_TIMEOUT"],
        health_check_interval=30,
        max_connections=config["REDIS_MAX_CONNECTIONS"],
    )
