"""The hot path's Redis calls (one per page view): lean, and coalesced across concurrent requests.

Two costs are cut here.

- **redis-py's per-command layers.** `Redis.execute_command` wraps every call in a retry object,
  option filtering, a pool checkout with a "can read?" poll of the socket, and response callbacks.
  Here a command is packed once (hiredis) and sent on one of the client's own connections (same URL,
  TLS, Sentinel, timeouts and health checks: they come from the client's pool).
- **A write, a wait and a read per request.** Under gevent each round trip is a send syscall, an
  epoll registration, a switch to the hub and back, and a recv: about a quarter of a question page's
  CPU under load. So a worker's concurrent requests hand their commands to one pipeline greenlet per
  connection pool, which sends everything waiting in one write and reads the replies in order
  (auto-pipelining, as ioredis and rueidis do). A request alone pays one switch more; under load
  many requests share one round trip. Redis runs the commands one after another either way, and a
  request waits at most one batch longer than it would on a connection of its own.

Safety:
- Replies are matched to callers by their order on one connection, and the connection is used again
  only after every reply of its batch was read. Any other outcome (timeout, reset, the pipeline
  greenlet killed mid-read) disconnects it first, and every caller of that batch gets a RedisError:
  no reply is ever handed to the wrong caller.
- An error reply (NOSCRIPT, WRONGTYPE) is raised in its own caller only; the socket stays clean.
- A connection error on a reused connection (e.g. Redis restarted) sends the batch once more on a
  fresh connection, as redis-py's own retry would, but only if no reply of it had been read: a
  command Redis answered is never sent twice. A timeout is not retried (the server is there but slow:
  a second try would double every caller's wait). When the batch fails, the calls queued behind it
  fail at once with it, rather than each waiting out its own timeout on the same server.
- A caller killed while it waits (a timeout of its own) leaves no trace: a queued command is never
  sent, and the reply to one already sent is read and dropped.
- Without gevent's monkey-patching (scripts, in-process tests, threads) there is no pipeline: each
  call is its own round trip on a connection kept between calls.
"""

from __future__ import annotations

import os
import weakref

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

    __slots__ = ("packed", "reply", "error", "waiter", "done")

    def __init__(self, packed: bytes, waiter):
        self.packed = packed
        self.reply = None
        self.error: BaseException | None = None
        self.waiter = waiter
        self.done = False


class Pipeline:
    """One per process and connection pool: a greenlet, alive while there is work, that writes the
    queued commands together and reads their replies in order, on the one connection it keeps."""

    def __init__(self, pool):
        import gevent
        from gevent.hub import Waiter, get_hub

        self._spawn, self._waiter, self._callback = gevent.spawn_raw, Waiter, get_hub().loop.run_callback
        self.thread = _native_thread_id()  # the hub's thread: the only one that may use it
        self.pool = pool
        self.conn = None
        self.queue: list[_Call] = []
        self.running = False
        self.round_trips = 0  # figures for tests and benchmarks
        self.commands = 0

    def call(self, packed: bytes):
        call = _Call(packed, self._waiter())
        self.queue.append(call)
        if not self.running:
            self.running = True
            self._spawn(self._run)
        try:
            call.waiter.get()  # switched back to once the outcome is in
        except BaseException:
            if not call.done and call in self.queue:  # never sent: it never will be
                self.queue.remove(call)
            raise
        if call.error is not None:
            raise call.error
        return call.reply

    def _run(self) -> None:
        try:
            while self.queue:
                batch, self.queue = self.queue[:MAX_BATCH], self.queue[MAX_BATCH:]
                self._round_trip(batch)
        finally:
            self.running = False
            if self.queue:  # stopped with work left (killed): those calls fail rather than hang
                queued, self.queue = self.queue, []
                self._finish(queued, RedisConnectionError("the Redis pipeline stopped"))

    def _round_trip(self, batch: list[_Call]) -> None:
        reused = self.conn is not None
        try:
            try:
                self._send_and_read(batch)
            except RedisConnectionError:
                if not reused or any(call.done for call in batch):
                    raise
                self._send_and_read(batch)  # a stale socket (Redis restarted): a fresh one, once
        except BaseException as exc:
            failure = exc if isinstance(exc, RedisError) else RedisConnectionError(f"interrupted: {exc!r}")
            pending = [call for call in batch if not call.done]
            if isinstance(exc, (RedisConnectionError, RedisTimeoutError)):  # the same server: fail fast
                pending, self.queue = pending + self.queue, []
            self._finish(pending, failure)
            self._finish([call for call in batch if call.done], None)
            if not isinstance(exc, Exception):
                raise  # GreenletExit and the like: this greenlet stops (the next call starts another)
            return
        self._finish(batch, None)

    def _send_and_read(self, batch: list[_Call]) -> None:
        conn, self.conn = self.conn or self.pool.get_connection(), None
        try:
            # One write: redis-py sends each item of the list with a sendall of its own.
            conn.send_packed_command([b"".join([call.packed for call in batch])])
            for call in batch:
                try:
                    call.reply = conn.read_response()
                except ResponseError as exc:  # a complete error reply: the socket is clean
                    call.error = exc
                call.done = True
        except BaseException:  # a reply may be left unread: never use this socket again
            conn.disconnect()
            self.pool.release(conn)
            raise
        self.conn = conn
        self.round_trips += 1
        self.commands += len(batch)

    def _finish(self, calls: list[_Call], error: BaseException | None) -> None:
        for call in calls:
            if error is not None:
                call.error, call.done = error, True
            self._callback(call.waiter.switch, None)  # from the hub, as gevent's Waiter requires

    def drop_connection(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.disconnect()
            self.pool.release(conn)


def _original_get_ident():
    from gevent import monkey

    return monkey.get_original("_thread", "get_ident")


def _native_thread_id() -> int:
    return _original_get_ident()()


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
        self.native_thread = _original_get_ident()  # the OS thread, even under monkey-patching
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
        if self.pipelined:
            pipeline_for(self.pool).drop_connection()
