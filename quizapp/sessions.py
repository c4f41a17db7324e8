"""Redis sessions read once per request (by the limits check when it can) and stored only when needed."""

from __future__ import annotations

import logging
import re
import secrets
import time
from datetime import timedelta

import redis
from flask import current_app, g, request, session
from flask_session.redis import RedisSession, RedisSessionInterface

from . import redis_conn
from .errors import RedisUnavailable
from .paths import is_infrastructure
from .redis_fast import FastCaller

log = logging.getLogger(__name__)

SESSION_COOKIE_NAME = "bizmodel.sid"
SESSION_KEY_PREFIX = "s:"
REFRESHED_AT_KEY = "_rt"  # epoch seconds of the last renewal (key and cookie), kept inside the session
SAVE_FAILED_KEY = "_session_save_failed"  # on g: this request's session write met an outage
SID_BYTES = 24  # 192 bits in 32 URL-safe characters: unguessable, and a short Redis key
_SANE_SID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ReadRedisSession(RedisSession):
    """A session whose stored data is in hand (read, or nothing to read): the plain dict methods.

    Its id is made only when something asks for it, i.e. when the session is stored.
    """

    store = None  # the session interface, while the stored data has not been read (LazyRedisSession)
    _sid = None
    renewing = False  # this save renews the lifetime (should_set_storage): the cookie goes out too

    @property
    def sid(self) -> str:
        """The id; a visitor without one gets it only when something asks (i.e. it is stored)."""
        if self._sid is None:
            self._sid = secrets.token_urlsafe(SID_BYTES)
        return self._sid

    @sid.setter
    def sid(self, value) -> None:
        self._sid = value

    @property
    def has_sid(self) -> bool:
        return self._sid is not None

    @property
    def pending(self) -> bool:
        return self.store is not None

    def __bool__(self) -> bool:
        """ServerSideSession.__bool__ (anything stored besides "_permanent"), without copying the
        data into a new dict as that one does, on every truth test of the session."""
        size = dict.__len__(self)
        return size > 1 or (size == 1 and not dict.__contains__(self, "_permanent"))

    def fill(self, data: dict | None) -> None:
        """Take the stored data (None: nothing stored, so a fresh id, never the client's choice)."""
        store, self.store = self.store, None
        if store is None:
            return
        if data:
            dict.update(self, data)
        else:
            self.sid = None  # a fresh id when one is needed, never the one the client sent
            self.permanent = store.permanent
        self.modified = False
        # From here on the data is in hand: the plain methods, without a read check on each call.
        self.__class__ = ReadRedisSession


class LazyRedisSession(ReadRedisSession):
    """A session whose stored data is fetched on first use, or handed over by the limits check.

    Until then it holds only the id from the cookie; a request that never looks at the session
    (health checks, static files, the landing page of a new visitor) costs no Redis read. Once
    read, it is a ReadRedisSession.
    """

    def __init__(self, *args, store=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.store = store

    def _ensure(self) -> None:
        if self.store is not None:
            self.fill(self.store.read_stored(self.sid))


def _reading_first(name: str):
    """The dict method `name`, reading the stored data before it runs (one definition for all)."""
    method = getattr(ReadRedisSession, name)

    def read_then_call(self, *args, **kwargs):
        self._ensure()
        return method(self, *args, **kwargs)

    read_then_call.__name__ = name
    return read_then_call


# Every way to look at or change the data reads it first; the id alone (sid, has_sid) does not.
_DATA_METHODS = (
    "__getitem__ get __contains__ __iter__ __len__ __bool__ keys items values "
    "setdefault __setitem__ __delitem__ pop update clear"
).split()
for _name in _DATA_METHODS:
    setattr(LazyRedisSession, _name, _reading_first(_name))


class PipelineRedisSessionInterface(RedisSessionInterface):
    """Redis sessions that are read lazily, stored only when non-empty, and 503 on an outage.

    Rolling expiry without a write per request: a session is written when it changes, and
    otherwise at most every SESSION_REFRESH_SECONDS of activity; each write renews the Redis key's
    full lifetime. The cookie goes out when the visitor's cookie does not name this session (a new
    or regenerated id) and with the renewal every SESSION_REFRESH_SECONDS, not with every answer:
    it names the same id, so it would only move its expiry by a few seconds (the key may outlive the
    cookie by at most SESSION_REFRESH_SECONDS, and then expires on its own).
    """

    session_class = LazyRedisSession

    def __init__(self, app, client, **kwargs):
        super().__init__(app, client=client, **kwargs)
        self.fast = FastCaller(client)  # the answer POST's one write, on the lean path
        replicas, timeout_ms = redis_conn.replicas_wanted(app.config)
        # With REDIS_WAIT_REPLICAS, the cookie goes out once a replica has the session too.
        self.durable = redis_conn.SessionWrites(
            client,
            replicas=replicas,
            timeout_ms=timeout_ms,
            skip_seconds=app.config.get("REDIS_WAIT_SKIP_SECONDS", 5),
        )

    def store_key(self, sid: str) -> str:
        return self.key_prefix + sid

    def open_session(self, app, request):
        sid = request.cookies.get(app.config["SESSION_COOKIE_NAME"], "")
        if _SANE_SID.match(sid):
            return self.session_class(sid=sid, store=self)
        return ReadRedisSession(sid=None, permanent=self.permanent)  # nothing stored to read

    def read_stored(self, sid: str) -> dict | None:
        """One GET: the stored data, or None (also used when the limits check could not prefetch)."""
        return self.decode(self.client.get(self.store_key(sid)))

    def decode(self, blob: bytes | None) -> dict | None:
        return self.serializer.decode(blob) if blob else None

    def regenerate(self, session) -> None:
        if session and not session.has_sid:
            session.modified = True  # nothing stored under an old id: the new one comes at save
            return
        super().regenerate(session)

    @staticmethod
    def _refresh_due(app, session) -> bool:
        refreshed = session.get(REFRESHED_AT_KEY, 0)
        return time.time() - refreshed >= app.config["SESSION_REFRESH_SECONDS"]

    def should_set_storage(self, app, session) -> bool:
        """Store when the data changed, or when the renewal is due (stamped: that marks it changed)."""
        if self._refresh_due(app, session):
            session.renewing = True
            session[REFRESHED_AT_KEY] = int(time.time())
        return session.modified

    def should_set_cookie(self, app, session) -> bool:
        """With the renewal, or when the request's cookie does not name this session (a new or
        regenerated id); a changed answer leaves the visitor's cookie, renewed within the interval."""
        return session.renewing or request.cookies.get(app.config["SESSION_COOKIE_NAME"]) != session.sid

    def _upsert_session(self, session_lifetime, session, store_id) -> None:
        value = self.serializer.encode(session)
        ttl = int(session_lifetime.total_seconds())
        if not self.durable.replicas:
            self.fast("SET", store_id, value, "EX", ttl)
            return
        self.durable.set(store_id, value, ex=ttl)

    def _save_kept(self, app, session, response) -> None:
        """Flask-Session's save_session for a session with data, step for step, with the Vary header
        added without parsing it twice and the cookie's settings read straight from the config."""
        if session.accessed:
            _vary_on_cookie(response)
        if not self.should_set_storage(app, session):
            return
        self._upsert_session(app.permanent_session_lifetime, session, self.key_prefix + session.sid)
        if not self.should_set_cookie(app, session):
            return
        config = app.config
        response.set_cookie(
            key=config["SESSION_COOKIE_NAME"],
            value=session.sid,
            expires=self.get_expiration_time(app, session),
            httponly=config["SESSION_COOKIE_HTTPONLY"],
            domain=config["SESSION_COOKIE_DOMAIN"],
            path=config["SESSION_COOKIE_PATH"] or config["APPLICATION_ROOT"],
            secure=config["SESSION_COOKIE_SECURE"],
            samesite=config["SESSION_COOKIE_SAMESITE"],
        )
        _vary_on_cookie(response)

    def save_session(self, app, session, response):
        if getattr(session, "pending", False):
            return  # never read, so never changed: nothing to write
        if not session.has_sid and not session:
            return  # a visitor with nothing to keep: no id, no key, no cookie
        if g.get(SAVE_FAILED_KEY):
            return  # the outage page for the write that failed: writing again would fail again
        accessed = session.accessed  # as the view left it (the checks below read the session)
        if not session.modified and session and not self._refresh_due(app, session):
            # Most page views: read, unchanged, refreshed recently. Flask-Session would work out
            # the cookie's name, domain, path and store key before deciding the same.
            if accessed:
                _vary_on_cookie(response)
            return
        try:
            if session and not self.use_signer:
                self._save_kept(app, session, response)
            else:  # an emptied session (its key and cookie deleted): Flask-Session's own path
                super().save_session(app, session, response)
        except redis.exceptions.RedisError as exc:
            g.setdefault(SAVE_FAILED_KEY, True)
            raise RedisUnavailable() from exc


def _vary_on_cookie(response) -> None:
    """response.vary.add("Cookie"), without parsing and re-serialising a Vary header of ours."""
    # Headers.get raises and catches a KeyError when the header is missing, as it mostly is.
    vary = next((value for name, value in response.headers._list if name.lower() == "vary"), None)
    if vary is None:
        response.headers._list.append(("Vary", "Cookie"))  # a constant: nothing to check for newlines
    elif vary != "Cookie":  # HeaderSet.add leaves a header that has it as it is
        response.vary.add("Cookie")


def init_sessions(app, client: redis.Redis) -> None:
    app.config.update(
        SESSION_COOKIE_NAME=SESSION_COOKIE_NAME,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=app.config["SESSION_COOKIE_SECURE"],
        PERMANENT_SESSION_LIFETIME=timedelta(hours=app.config["SESSION_LIFETIME_HOURS"]),
        # Rolling refresh is throttled by PipelineRedisSessionInterface.should_set_storage.
        SESSION_REFRESH_EACH_REQUEST=False,
    )
    app.session_interface = PipelineRedisSessionInterface(
        app, client=client, key_prefix=SESSION_KEY_PREFIX, permanent=True, sid_length=SID_BYTES
    )


def require_session_store() -> None:
    """Pipeline step: read the session now if the limits check did not, or answer 503 if Redis is down."""
    current = session._get_current_object()
    if not getattr(current, "pending", False):
        return
    if is_infrastructure(request.path):
        return  # probes, metrics and static files never need the session: leave it unread
    if g.get("session_store_failed"):
        raise RedisUnavailable()
    try:
        current.fill(current_app.session_interface.read_stored(current.sid))
    except redis.exceptions.RedisError as exc:
        log.warning("session.redis_unavailable")
        raise RedisUnavailable() from exc
