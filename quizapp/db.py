"""Gevent-aware Postgres pool and the one-transaction-per-action helpers."""

from __future__ import annotations

import collections
import functools
import logging
import random
import select
import time
from contextlib import contextmanager

import gevent
import gevent.lock
import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras
from flask import current_app
from psycopg2 import sql

from .errors import DatabaseUnavailable, PoolExhausted

log = logging.getLogger(__name__)

RETRYABLE_SQLSTATES = ("40001", "40P01")  # serialization failure, deadlock detected


class ConnectionLost(psycopg2.OperationalError):
    """The server went away mid-transaction; `during_commit` says whether the outcome is unknown."""

    def __init__(self, during_commit: bool):
        super().__init__("database connection lost")
        self.during_commit = during_commit


class TransactionAborted(psycopg2.DatabaseError):
    """COMMIT answered ROLLBACK: a statement failed earlier and its error was swallowed."""


class SecondStatementInRead(psycopg2.ProgrammingError):
    """run_read's function sent a second statement: its one-statement transaction had already ended."""


class ConnectionPool:
    """A blocking pool: callers wait (up to `timeout`) for a free slot instead of failing."""

    def __init__(
        self,
        dsn,
        minconn=2,
        maxconn=20,
        timeout=15.0,
        connect_timeout=5,
        statement_timeout_ms=30000,
        lock_timeout_ms=5000,
        idle_tx_timeout_ms=60000,
        tx_retries=3,
        connect_kwargs=None,
    ):
        self.dsn = dsn
        self.tx_retries = tx_retries
        self.minconn = minconn
        self.maxconn = maxconn
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        # Per transaction, not per connection: behind PgBouncer in transaction pooling mode a
        # server connection serves many clients, so no session-level setting may be relied on.
        # Sent in front of the first statement, in its round trip (no '%': parameters interpolate
        # over the whole text). A read is one statement in its own implicit transaction, read-only.
        timeouts = (
            f"SET LOCAL statement_timeout = {int(statement_timeout_ms)};"
            f" SET LOCAL lock_timeout = {int(lock_timeout_ms)};"
        )
        self.transaction_opening = (
            f"BEGIN; {timeouts} SET LOCAL idle_in_transaction_session_timeout = {int(idle_tx_timeout_ms)}; "
        )
        self.read_opening = f"{timeouts} SET LOCAL transaction_read_only = on; "
        self.connect_kwargs = dict(connect_kwargs or {})
        self._idle = collections.deque()
        self._slots = gevent.lock.BoundedSemaphore(maxconn)
        self._in_use = 0
        self._waiting = 0
        self._stats = {"acquired": 0, "waited": 0, "wait_seconds": 0.0, "max_wait": 0.0}
        self._stats.update({"timeouts": 0, "discarded": 0, "opened": 0})

    def _connect(self):
        conn = psycopg2.connect(
            self.dsn,
            connect_timeout=self.connect_timeout,
            application_name="quizapp",
            keepalives=1,
            keepalives_idle=30,
            **self.connect_kwargs,
        )
        # No implicit BEGIN round trip: transaction() sends BEGIN with the first statement.
        conn.autocommit = True
        self._stats["opened"] += 1
        return conn

    def warm(self):
        """Open the minimum number of connections (called once per worker)."""
        while len(self._idle) + self._in_use < self.minconn:
            try:
                self._idle.append(self._connect())
            except psycopg2.OperationalError:
                log.warning("db.warm_failed", exc_info=True)
                return

    def acquire(self, timeout=None):
        timeout = self.timeout if timeout is None else timeout
        started = time.monotonic()
        self._waiting += 1
        try:
            got = self._slots.acquire(timeout=timeout)
        finally:
            self._waiting -= 1
        waited = time.monotonic() - started
        if not got:
            self._stats["timeouts"] += 1
            raise PoolExhausted()
        self._stats["acquired"] += 1
        if waited > 0.001:
            self._stats["waited"] += 1
            self._stats["wait_seconds"] += waited
            self._stats["max_wait"] = max(self._stats["max_wait"], waited)
        try:
            conn = self._pop_live_idle() or self._connect()
        except psycopg2.OperationalError as exc:
            self._slots.release()
            raise DatabaseUnavailable() from exc
        except BaseException:
            self._slots.release()
            raise
        self._in_use += 1
        return conn

    def _pop_live_idle(self):
        while self._idle:
            conn = self._idle.pop()
            if _looks_alive(conn):
                return conn
            # Something arrived on an idle socket: a FATAL from a terminated or restarting server.
            self._stats["discarded"] += 1
            _close_quietly(conn)
        return None

    def release(self, conn, discard=False):
        self._in_use -= 1
        try:
            if discard or conn.closed:
                self._stats["discarded"] += 1
                _close_quietly(conn)
            else:
                self._idle.append(conn)
        finally:
            self._slots.release()

    def discard_idle(self):
        """Close every idle connection: after one is found dead (e.g. a restart) the rest are too."""
        while self._idle:
            self._stats["discarded"] += 1
            _close_quietly(self._idle.popleft())

    def close(self):
        self.discard_idle()

    def stats(self) -> dict:
        return {
            "size": len(self._idle) + self._in_use,
            "idle": len(self._idle),
            "in_use": self._in_use,
            "waiting": self._waiting,
            "max": self.maxconn,
            **self._stats,
        }


def _close_quietly(conn):
    try:
        conn.close()
    except psycopg2.Error:
        pass


def _looks_alive(conn) -> bool:
    """An idle connection has nothing to read; a readable socket means EOF or a FATAL notice."""
    if conn.closed:
        return False
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError, psycopg2.InterfaceError):
        return False
    return not readable


def _is_disconnect(exc, conn) -> bool:
    return isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)) and bool(conn.closed)


def current_pool() -> ConnectionPool:
    return current_app.extensions["db_pool"]


class _OpeningCursor:
    """Mixed into a cursor class: the transaction's opening text rides with the first statement."""

    opening = None  # still to send: BEGIN and the SET LOCALs, or the read's SET LOCALs
    one_statement = False  # run_read: the statement's implicit transaction ends with it
    sent = 0

    def execute(self, query, vars=None):
        if self.one_statement and self.sent:
            raise SecondStatementInRead("run_read allows one statement; use run_in_transaction")
        if self.opening is not None:
            query = _opened(self.opening, query, self)
            self.opening = None
        self.sent += 1
        return super().execute(query, vars)

    def _open_alone(self):
        """Other entry points (executemany, copy, callproc) get the opening in a round trip of its own."""
        if self.one_statement:
            raise SecondStatementInRead("run_read allows one execute() only")
        if self.opening is not None:
            super().execute(self.opening)
            self.opening = None
            self.sent += 1

    def executemany(self, query, vars_list):
        self._open_alone()
        return super().executemany(query, vars_list)

    def callproc(self, procname, parameters=None):
        self._open_alone()
        return super().callproc(procname, parameters)

    def copy_expert(self, sql, file, size=8192):
        self._open_alone()
        return super().copy_expert(sql, file, size)

    def copy_from(self, *args, **kwargs):
        self._open_alone()
        return super().copy_from(*args, **kwargs)

    def copy_to(self, *args, **kwargs):
        self._open_alone()
        return super().copy_to(*args, **kwargs)


@functools.cache
def _opening_cursor(cursor_factory):
    return type(f"Opening{cursor_factory.__name__}", (_OpeningCursor, cursor_factory), {})


def _opened(opening: str, query, cur):
    if isinstance(query, bytes):
        return opening.encode() + query
    if isinstance(query, sql.Composable):
        query = query.as_string(cur)
    return opening + query


_IDLE = psycopg2.extensions.TRANSACTION_STATUS_IDLE


@contextmanager
def transaction(
    pool: ConnectionPool | None = None, cursor_factory=psycopg2.extras.RealDictCursor, *, read=False
):
    """One unit of work: commit on success, roll back on any error, return the connection.

    Round trips: BEGIN and the timeouts go with the first statement, then one per statement and one
    COMMIT (none at all when nothing was executed). With read=True (see run_read): one statement,
    read-only, its own implicit transaction: one round trip in all."""
    pool = pool or current_pool()
    conn = pool.acquire()
    broken = False
    committing = False
    try:
        try:
            with conn.cursor(cursor_factory=_opening_cursor(cursor_factory)) as cur:
                cur.opening = pool.read_opening if read else pool.transaction_opening
                cur.one_statement = read
                yield cur
                if cur.sent and not read:
                    committing = True
                    cur.execute("COMMIT")
                    if cur.statusmessage != "COMMIT":
                        raise TransactionAborted(f"COMMIT answered {cur.statusmessage}")
        except BaseException as exc:
            if _is_disconnect(exc, conn):
                broken = True
                # A read's outcome does not matter: it is read-only (the server enforces it).
                raise ConnectionLost(during_commit=committing) from exc
            if conn.info.transaction_status != _IDLE:
                broken = not _rolled_back(conn)
            raise
        if conn.info.transaction_status != _IDLE:  # never hand on a connection inside a transaction
            broken = not _rolled_back(conn)
    finally:
        if broken:
            pool.discard_idle()
        pool.release(conn, discard=broken)


def _rolled_back(conn) -> bool:
    try:
        with conn.cursor() as cur:
            cur.execute("ROLLBACK")
        return True
    except psycopg2.Error:
        return False


def _retryable(exc) -> bool:
    if isinstance(exc, ConnectionLost):
        return not exc.during_commit
    return getattr(exc, "pgcode", None) in RETRYABLE_SQLSTATES


def run_in_transaction(fn, *args, pool=None, retries=None, **kwargs):
    """Call fn(cur, *args, **kwargs) in a transaction; retry serialization/deadlock/lost-connection
    failures a bounded number of times, with jittered backoff."""
    return _run_with_retries(fn, args, kwargs, pool=pool, retries=retries, read=False)


def run_read(fn, *args, pool=None, retries=None, **kwargs):
    """run_in_transaction for a function that sends ONE read-only statement: one round trip (the
    server refuses a write in it; a second statement raises SecondStatementInRead)."""
    return _run_with_retries(fn, args, kwargs, pool=pool, retries=retries, read=True)


def _run_with_retries(fn, args, kwargs, *, pool, retries, read):
    pool = pool or current_pool()
    attempts = retries or pool.tx_retries
    for attempt in range(1, attempts + 1):
        try:
            with transaction(pool, read=read) as cur:
                return fn(cur, *args, **kwargs)
        except Exception as exc:
            if not _retryable(exc):
                if isinstance(exc, ConnectionLost):
                    raise DatabaseUnavailable() from exc
                raise
            if attempt == attempts:
                log.warning("db.tx_retries_exhausted", extra={"attempts": attempts})
                if isinstance(exc, ConnectionLost):
                    raise DatabaseUnavailable() from exc
                raise
            # Jitter, not security: B311 does not apply.
            gevent.sleep(random.uniform(0, 0.02 * 2**attempt))  # nosec B311
    raise AssertionError("unreachable")


def create_pool(config) -> ConnectionPool:
    return ConnectionPool(
        config["DATABASE_URL"],
        minconn=config["DB_POOL_MIN"],
        maxconn=config["DB_POOL_MAX"],
        timeout=config["DB_POOL_TIMEOUT"],
        connect_timeout=config["DB_CONNECT_TIMEOUT"],
        statement_timeout_ms=config["DB_STATEMENT_TIMEOUT_MS"],
        lock_timeout_ms=config["DB_LOCK_TIMEOUT_MS"],
        idle_tx_timeout_ms=config["DB_IDLE_TX_TIMEOUT_MS"],
        tx_retries=config["DB_TX_RETRIES"],
        connect_kwargs=database_tls_options(config),
    )


def database_tls_options(config) -> dict:
    """libpq TLS settings from DATABASE_SSL* (they override the same keys in DATABASE_URL)."""
    names = {
        "DATABASE_SSLMODE": "sslmode",
        "DATABASE_SSLROOTCERT": "sslrootcert",
        "DATABASE_SSLCERT": "sslcert",
        "DATABASE_SSLKEY": "sslkey",
    }
    return {libpq: config[name] for name, libpq in names.items() if config.get(name)}
