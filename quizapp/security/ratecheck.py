"""The pipeline's limits step: every limit of a request and the session read in one Redis round trip.

Counters live under limits' own key names and window arithmetic, in Flask-Limiter's storage.
When Redis fails, the same limits are counted in Flask-Limiter's in-memory fallback (per worker)
and Redis is probed again with a growing pause, as Flask-Limiter itself does.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import time
from pathlib import Path

import redis
from flask import current_app, g, request, session
from limits.storage import RedisStorage

from .. import redis_conn
from ..redis_fast import FastCaller
from .addresses import address_group
from .limits import (
    ALWAYS,
    KEY_PREFIX,
    LIMITER_KEY,
    RULES_KEY,
    WITH_SESSION,
    Entry,
    RateLimited,
    is_exempt_path,
)

log = logging.getLogger(__name__)

CHECKER_KEY = "quizapp.limit_checker"
SCRIPT = (Path(__file__).with_name("limit_check.lua")).read_text()
PROBE_PAUSE_MAX = 8.0  # seconds between attempts to use Redis again while on the fallback
INPUTS_CACHE_SIZE = 8192  # (page limits, person, address) combinations kept per worker


class LimitChecker:
    """Runs the Lua check against the limiter's Redis, or the in-memory fallback when it is down."""

    def __init__(self, app):
        self.limiter = app.extensions[LIMITER_KEY]
        self.rules = app.extensions[RULES_KEY]
        self.ipv6_prefix = app.config["RATELIMIT_IPV6_PREFIX"]
        self.headers_on_success = app.config["RATELIMIT_HEADERS_ON_SUCCESS"]
        storage = self.limiter.storage
        self.sliding = app.config["RATELIMIT_STRATEGY"] == "sliding-window-counter"
        self.client = None
        self.same_store = False
        if isinstance(storage, RedisStorage):
            self.storage_prefix = storage.key_prefix
            # The session lives in the same Redis as the counters: read it in the same call.
            # (redis_conn builds both from REDIS_URL / REDIS_SENTINELS unless the URI was overridden.)
            self.same_store = app.config["RATELIMIT_STORAGE_URI"] == redis_conn.limiter_storage(app.config)[0]
            self.client = redis_conn.redis_client(app) if self.same_store else storage.get_connection()
            self.script = self.client.register_script(SCRIPT)
            self.call = FastCaller(self.client)
        self.probe_at = 0.0
        self.probe_pause = 1.0
        self._inputs: dict[tuple, tuple] = {}

    # --- keys -------------------------------------------------------------------------------

    def _storage_keys(self, key: str) -> tuple[str, str]:
        if self.sliding:  # limits' RedisStorage: "{key}" and "{key}/-1", on one cluster slot
            current = f"{self.storage_prefix}:{{{key}}}"
            return current, current + "/-1"
        plain = f"{self.storage_prefix}:{key}"
        return plain, plain

    def _script_inputs(self, entries: tuple[Entry, ...], person_key: str, address_key: str):
        """The counters' keys and (group, amount, expiry) figures of the entries: the same for a
        person's every view of a page, so built once per worker and (entries, person, address)."""
        # The entries tuples live as long as the rules (resolved once per endpoint and method);
        # the cached value holds its tuple, so a reused id() can never match a stale entry.
        cache_key = (id(entries), person_key, address_key)
        found = self._inputs.get(cache_key)
        if found is not None and found[0] is entries:
            return found[1], found[2]
        keys, args = [], []
        for entry in entries:
            keys.extend(self._storage_keys(entry.key(person_key if entry.per_person else address_key)))
            args.extend((entry.group, entry.item.amount, entry.item.get_expiry()))
        if len(self._inputs) >= INPUTS_CACHE_SIZE:
            self._inputs.clear()  # a crude bound: refilling costs what building did
        self._inputs[cache_key] = (entries, keys, args)
        return keys, args

    # --- the check --------------------------------------------------------------------------

    def check(self, entries: tuple[Entry, ...], req=None) -> None:
        current = session._get_current_object()
        pending = getattr(current, "pending", False)
        address_key = "a:" + address_group((req or request).remote_addr, self.ipv6_prefix)
        if pending and self.same_store:
            mode, session_key = "k", current.store.store_key(current.sid)
        else:
            mode, session_key = ("1" if self._has_session(current) else "0"), ""
        person_key = "" if mode == "0" else _person_key(current.sid)
        if self.client is None:
            self._check_locally(entries, mode == "1", person_key, address_key, self.limiter.limiter)
            return
        if self.limiter._storage_dead and time.monotonic() < self.probe_at:
            self._check_on_fallback(entries, current, mode, person_key, address_key)
            return
        limit_keys, limit_args = self._script_inputs(entries, person_key, address_key)
        keys, args = [session_key, *limit_keys], [mode, "s" if self.sliding else "f", "1", *limit_args]
        try:
            blob, refused, figure, remaining = self._run_script(keys, args)
        except redis.exceptions.RedisError:
            self._storage_failed()
            self._check_on_fallback(entries, current, mode, person_key, address_key)
            return
        if self.limiter._storage_dead:
            self.limiter._storage_dead = False
            self.probe_pause = 1.0
        if mode == "k":
            current.fill(current.store.decode(blob))
        if refused:
            entry = entries[refused - 1]
            raise RateLimited(amount=entry.item.amount, retry_after=math.ceil(figure / 1000))
        if self.headers_on_success and figure:
            item = entries[figure - 1].item
            g.rate_limit_figures = (item.amount, remaining, int(time.time() + item.get_expiry()))

    def _run_script(self, keys: list, args: list):
        # EVALSHA on the lean path (redis_fast): redis-py's layers cost more CPU than the round trip.
        return self.call.evalsha(self.script, keys, args)

    @staticmethod
    def _has_session(current) -> bool:
        try:
            return bool(current)  # reads a pending session from its own Redis
        except redis.exceptions.RedisError:
            g.session_store_failed = True  # the session step answers 503 without trying again
            return False

    def _storage_failed(self) -> None:
        if not self.limiter._storage_dead:
            log.warning("ratelimit.storage_unreachable")
        self.limiter._storage_dead = True
        self.probe_at = time.monotonic() + self.probe_pause
        self.probe_pause = min(self.probe_pause * 2, PROBE_PAUSE_MAX)

    def _check_on_fallback(self, entries, current, mode, person_key, address_key) -> None:
        has_session = self._has_session(current) if mode == "k" else mode == "1"
        self._check_locally(entries, has_session, person_key, address_key, self.limiter._fallback_limiter)

    @staticmethod
    def _check_locally(entries, has_session, person_key, address_key, strategy) -> None:
        """The same limits, all or nothing, with a limits strategy object (memory storage)."""
        applying = [
            (e, (KEY_PREFIX, person_key if e.per_person else address_key, e.scope))
            for e in entries
            if e.group == ALWAYS or (e.group == WITH_SESSION) == has_session
        ]
        for entry, identifiers in applying:
            if not strategy.test(entry.item, *identifiers):
                reset = strategy.get_window_stats(entry.item, *identifiers).reset_time
                raise RateLimited(
                    amount=entry.item.amount, retry_after=max(1, math.ceil(reset - time.time()))
                )
        for entry, identifiers in applying:
            strategy.hit(entry.item, *identifiers)


@functools.lru_cache(maxsize=INPUTS_CACHE_SIZE)  # a person's every page view: hashed once per worker
def _person_key(sid: str) -> str:
    # The session id itself never appears in a counter's name.
    return "p:" + hashlib.blake2b(sid.encode(), digest_size=12).hexdigest()


def init_app(app) -> None:
    limiter = app.extensions.get(LIMITER_KEY)
    if limiter is not None and limiter.enabled:
        app.extensions[CHECKER_KEY] = LimitChecker(app)


def check_request_limits() -> None:
    """Pipeline step: refuse a request over any of its limits (429); prefetch the session."""
    checker: LimitChecker | None = current_app.extensions.get(CHECKER_KEY)
    if checker is None:
        return
    req = request._get_current_object()
    if is_exempt_path(req.path):
        return
    entries = checker.rules.entries_for(req.endpoint, req.method)
    if entries:
        checker.check(entries, req)
