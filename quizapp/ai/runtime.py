"""The per-process AI objects (client, budget, breaker, store, queue), built lazily after fork."""

from __future__ import annotations

import logging
import os

from flask import current_app

from .. import redis_conn
from . import client as ai_client
from .breaker import Breaker
from .budget import Budget
from .calls import Caller
from .queue import AIQueue
from .store import JobStore

log = logging.getLogger(__name__)

EXTENSION = "ai_runtime"


class AIRuntime:
    """Everything one worker process needs; dispatchers get it explicitly (no app context needed)."""

    def __init__(self, config, redis_client):
        self.pid = os.getpid()
        self.config = config
        self.redis = redis_client
        self.client = ai_client.build_client(config)
        self.budget = Budget(
            redis_client,
            rpm=config["AI_RPM"],
            window_seconds=config["AI_WINDOW_SECONDS"],
            max_in_flight=config["AI_MAX_IN_FLIGHT"],
            lease_seconds=config["AI_LEASE_SECONDS"],
            replicas=config.get("REDIS_WAIT_REPLICAS", 0),
            wait_timeout_ms=config.get("REDIS_WAIT_TIMEOUT_MS", 200),
        )
        self.breaker = Breaker(
            redis_client,
            failures=config["AI_BREAKER_FAILURES"],
            cooldown_seconds=config["AI_BREAKER_COOLDOWN"],
            probe_seconds=config["AI_LEASE_SECONDS"],
        )
        self.store = JobStore(
            redis_client,
            ttl_seconds=config["AI_CACHE_SECONDS"],
            secret=config["SECRET_KEY"],
            fallback_ttl_seconds=config["AI_FALLBACK_CACHE_SECONDS"],
        )
        self.caller = Caller(self)
        self.queue = AIQueue(self)


def enabled(app=None) -> bool:
    return bool((app or current_app).config.get("OPENAI_API_KEY"))


def get_runtime(app=None) -> AIRuntime:
    """This process's runtime; a forked child builds its own (pids differ), never at import."""
    app = app or current_app._get_current_object()
    runtime = app.extensions.get(EXTENSION)
    if runtime is None or runtime.pid != os.getpid():
        runtime = app.extensions[EXTENSION] = AIRuntime(app.config, redis_conn.redis_client(app))
    return runtime


def stop_runtime(app) -> None:
    """Stop this process's dispatchers (tests and shutdown)."""
    runtime = app.extensions.pop(EXTENSION, None)
    if runtime is not None:
        runtime.queue.stop()
        runtime.client.close()
