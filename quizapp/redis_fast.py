"""The hot path's Redis calls (one per page view): lean, and coalesced across concurrent requests.

Two costs are cut here.

- **redis-py's per-command layers.** `Redis.execute_command` wraps every call in a retry object,
  option filtering, a pool checkout with a "can read?" poll of the socket, and response callbacks.
  Here a command is packed once (hiredis) and sent on one of the client's own connections (same URL,
  TLS, Sentinel, timeouts and health checks: they come from the client's pool).
- **A write, a wait and a read per request.** Under gevent each round trip is a send syscall, an
  epoll registration, a switch to the hub and back, and a recv: about a quarter of a question page's
  CPU under load. So a worker's concurrent requests share one connection per pool (auto-pipelining,
  as ioredis and rueidis do): a writer greenlet sends every command queued since its last write in
  one write, without waiting for the replies owed to earlier writes, and a reader greenlet reads the
  replies as they arrive, in order. A request alone pays a greenlet switch or two more; under load,
  what a worker's greenlets ask for in one pass of the event loop goes out in one write and comes
  back in one read. Redis runs the commands one after another either way.

Safety:
- Replies are matched to callers by their order on one connection. When the connection fails
  (timeout, reset, the reader killed mid-read) it is closed, and every caller still owed a reply on
  it gets a RedisError: no reply is ever handed to the wrong caller.
- An error reply (NOSCRIPT, WRONGTYPE) is raised in its own caller only; the socket stays clean.
- Redis dropping a kept connection (a restart) shows as a connection error before any reply on it:
  what was sent on it is sent once more on a fresh connection, as redis-py's own retry would. Only
  then, and only once: a command Redis answered is never sent twice. A timeout is not retried (the
  server is there but slow: a second try would double every caller's wait).
- When the connection fails for a timeout or a connection error, the calls queued behind it fail at
  once too, rather than each waiting out its own timeout on the same server.
- A caller killed while it waits (a timeout of its own) leaves no trace: a command still queued is
  never sent, and the reply to one already taken for sending is read and dropped.
- Without gevent's monkey-patching (scripts, in-process tests, threads) there is no pipeline: each
  call is its own round trip on a connection kept between calls.
"""

from __future__ import annotations

import os
import weakref
from collections import deque

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

try:  # redis-py's own packer checks every argument's type in Python first (~2% of a page)
    from hiredis import pack_command as _pack
except ImportError:  # pragma: no cover - hiredis is in requirements.txt
    _pack = None

KEEP_IDLE = 64  # without the pipeline: at most this many connections kept between calls
POOL_SHARE = 8  # ... and at most 1/8 of the pool's connections (a few callers share one client)
MAX_BATCH = 128  # commands in one write, at most: bounds one write's size and one batch's wait


def _packed(args) -> bytes:
    if _pack is not None:  # the hot path's arguments are str, int and bytes: packed as they are
        return _pack(args)
    return b"".join(redis.connection.PythonRespSerializer(lambda x: x).pack(*args))  # pragma: no cover


def cooperative() -> bool:
    """True under gevent's monkey-patching (gunicorn's gevent workers, via wsgi.py)."""
    from gevent import monkey

    return monkey.is_module_patched("socket")


class _Call:
    """One caller's command and, once the pipeline has read its reply, the outcome."""

    __slots__ = ("packed", "reply", "error", "waiter", "done", "retried")

    def __init__(self, packed: bytes, waiter):
        self.packed = packed
        self.reply = None
        self.error: BaseException | None = None
        self.waiter = waiter
        self.done = False
        self.retried = False  # sent once more after a stale connection failed it


class Pipeline:
    """One per process and connection pool, on the one connection it keeps.

    A writer greenlet sends every command queued since its last write in one write, without waiting
    for the replies owed to earlier writes; a reader greenlet reads replies as they arrive, in order,
    and hands each to its caller. Each greenlet lives while it has work. So a command waits for
    neither the previous write's replies nor a second loop of the hub: under load, everything the
    worker's greenlets asked for in one pass of the event loop goes out in one write.
    """

    def __init__(self, pool):
        import gevent
        from gevent.hub import Waiter, get_hub

        self._spawn, self._waiter, self._callback = gevent.spawn_raw, Waiter, get_hub().loop.run_callback
        self.thread = _native_get_ident()()  # the hub's thread: the only one that may use it
        self.pool = pool
        self.conn = None
        self.queue: list[_Call] = []  # not sent yet
        self.in_flight: deque[_Call] = deque()  # sent on self.conn; their replies come in this order
        self.writing = False  # the writer greenlet is alive
        self.reading = None  # the connection a live reader greenlet reads from
        self.unconfirmed = False  # self.conn was kept idle and nothing was read on it since
        self.round_trips = 0  # figures for tests and benchmarks: writes, and commands they carried
        self.commands = 0

    def call(self, packed: bytes):
        call = _Call(packed, self._waiter())
        self.queue.append(call)
        self._wake_writer()
        try:
            call.waiter.get()  # switched back to once the outcome is in
        except BaseException:
            if not call.done and call in self.queue:  # never sent: it never will be
                self.queue.remove(call)
            raise
        if call.error is not None:
            raise call.error
        return call.reply

    # --- the writer ---------------------------------------------------------------------------

    def _wake_writer(self) -> None:
        if not self.writing:
            self.writing = True
            self._spawn(self._write)  # runs once this pass of the loop is done: the rest queue too

    def _write(self) -> None:
        try:
            while self.queue:
                batch, self.queue = self.queue[:MAX_BATCH], self.queue[MAX_BATCH:]
                self._send(batch)
        finally:
            self.writing = False
            if self.queue:  # killed with work left: those calls fail rather than hang
                queued, self.queue = self.queue, []
                self._finish(queued, RedisConnectionError("the Redis pipeline stopped"))

    def _send(self, batch: list[_Call]) -> None:
        idle = self.conn is not None and not self.in_flight
        for attempt in (1, 2):
            try:
                if self.conn is None:
                    self.conn, self.unconfirmed = self.pool.get_connection(), False
                elif idle:
                    self.unconfirmed = True
                # One write (redis-py would send each item of a list with a sendall of its own), and
                # no health-check PING: its reply would be read by this greenlet, not the reader.
                self.conn.send_packed_command([b"".join([call.packed for call in batch])], check_health=False)
                break
            except BaseException as exc:
                retry = attempt == 1 and idle and isinstance(exc, RedisConnectionError)
                if not retry:  # a stale kept socket is given one fresh try; otherwise it failed
                    self._broken(exc, batch)
                    if not isinstance(exc, Exception):
                        raise
                    return
                self._drop()
        self.in_flight.extend(batch)
        self.round_trips += 1
        self.commands += len(batch)
        if self.reading is not self.conn:
            self.reading = self.conn
            self._spawn(self._read, self.conn)

    # --- the reader ---------------------------------------------------------------------------

    def _read(self, conn) -> None:
        in_flight = self.in_flight
        try:
            while in_flight and self.conn is conn:
                try:
                    reply, error = conn.read_response(), None
                except ResponseError as exc:  # a complete error reply: the socket is clean
                    reply, error = None, exc
                self.unconfirmed = False
                call = in_flight.popleft()
                call.reply, call.error, call.done = reply, error, True
                self._callback(call.waiter.switch, None)  # from the hub, as gevent's Waiter requires
        except BaseException as exc:
            if self.conn is conn:  # else whoever dropped it has failed what it owed
                stale = self.unconfirmed and isinstance(exc, RedisConnectionError)
                if stale and not any(call.retried for call in in_flight):
                    # Redis dropped a kept connection (a restart): nothing sent on it was answered,
                    # so nothing ran. Once more, on a fresh connection, ahead of everything queued.
                    resend = list(in_flight)
                    in_flight.clear()
                    for call in resend:
                        call.retried = True
                    self._drop()
                    self.queue[:0] = resend
                    self._wake_writer()
                else:
                    self._broken(exc, [])
            if not isinstance(exc, Exception):
                raise
        finally:
            if self.reading is conn:
                self.reading = None

    # --- failures -----------------------------------------------------------------------------

    def _broken(self, exc: BaseException, batch: list[_Call]) -> None:
        """The connection failed: what was sent on it and this batch fail; so does everything queued
        when the server itself failed (a timeout or a lost connection), instead of each caller
        waiting out its own timeout on it."""
        failure = exc if isinstance(exc, RedisError) else RedisConnectionError(f"interrupted: {exc!r}")
        failed = [*self.in_flight, *batch]
        self.in_flight.clear()
        if isinstance(exc, (RedisConnectionError, RedisTimeoutError)):
            failed += self.queue
            self.queue = []
        self._drop()
        self._finish(failed, failure)

    def _finish(self, calls: list[_Call], error: BaseException) -> None:
        for call in calls:
            call.error, call.done = error, True
            self._callback(call.waiter.switch, None)

    def _drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.disconnect()
            self.pool.release(conn)


def _native_get_ident():
    """_thread.get_ident as it was before monkey-patching: the OS thread, not the greenlet."""
    from gevent import monkey

    return monkey.get_original("_thread", "get_ident")


_PIPELINES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # pool -> (pid, Pipeline)


def pipeline_for(pool) -> Pipeline:
    """The pool's pipeline in this process (a forked child starts its own: sockets are not shared)."""
    found = _PIPELINES.get(pool)
    if found is None or found[0] != os.getpid():
        found = (os.getpid(), Pipeline(pool))
        _PIPELINES[pool] = found
    return found[1]


class FastCaller:
    """Calls on the lean path: through the pool's pipeline under gevent, else one round trip each."""

    def __init__(self, client: redis.Redis, pipelined: bool | None = None):
        self.pool = client.connection_pool
        self.pipelined = cooperative() if pipelined is None else pipelined
        self.native_thread = _native_get_ident()
        self.idle: list = []
        self.pid = os.getpid()
        # A blocking pool hands a freed connection to a waiter: keeping one here could leave a
        # waiter blocked while it sits idle. Such a pool gets every connection back at once.
        blocking = isinstance(self.pool, redis.BlockingConnectionPool)
        share = getattr(self.pool, "max_connections", 2**31) // POOL_SHARE
        self.keep = 0 if blocking else min(KEEP_IDLE, share)

    def __call__(self, *args):
        """One command (e.g. "EVALSHA", sha, n, *keys, *args): its raw reply, or a RedisError."""
        if self.pipelined:
            pipeline = pipeline_for(self.pool)
            if pipeline.thread == self.native_thread():  # not from a threadpool's thread
                return pipeline.call(_packed(args))
        if self.pid != os.getpid():  # forked: the parent's sockets are not ours to use
            self.idle, self.pid = [], os.getpid()
        reused = bool(self.idle)
        try:
            return self._call(args)
        except (RedisConnectionError, RedisTimeoutError):
            if not reused:
                raise
            self.drop_idle()  # they all went to the same server: none is likely to work
            return self._call(args)

    def evalsha(self, script, keys: list, args: list):
        """Run a registered script (`client.register_script`) by its SHA; a Redis that lost it
        (restarted, flushed, failed over) gets it loaded again and the call made once more."""
        try:
            return self("EVALSHA", script.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            script.registered_client.script_load(script.script)
            return self("EVALSHA", script.sha, len(keys), *keys, *args)

    def _call(self, args):
        conn = self.idle.pop() if self.idle else self.pool.get_connection()
        try:
            conn.send_packed_command([_packed(args)])
            reply = conn.read_response()
        except ResponseError:  # a complete error reply (NOSCRIPT, wrong type): the socket is clean
            self._put_back(conn)
            raise
        except BaseException:  # anything else may leave a reply unread: never reuse this socket
            conn.disconnect()
            self.pool.release(conn)
            raise
        self._put_back(conn)
        return reply

    def _put_back(self, conn) -> None:
        if len(self.idle) < self.keep:
            self.idle.append(conn)
        else:
            self.pool.release(conn)

    def drop_idle(self) -> None:
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.disconnect()
            self.pool.release(conn)
