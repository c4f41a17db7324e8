"""The hot path's Redis calls (one per page view) without redis-py's per-command layers.

`Redis.execute_command` wraps every call in a retry object, option filtering, a pool checkout with a
"can read?" poll of the socket, and response callbacks: about 75 us of CPU around a 70 us round
trip, on every page. `FastCaller` keeps the client's own connections (same URL, TLS, Sentinel,
timeouts and health checks: they come from the client's pool) on a per-process stack between calls
and sends the command directly.

Safety: a connection goes back on the stack only after a complete reply; any other outcome
(timeout, reset, a greenlet killed mid-read) disconnects it first, so no reply is ever read by the
wrong caller. A connection error on a reused connection (e.g. Redis restarted) drops every idle
connection and tries once more on a fresh one, as redis-py's own retry would.
"""

from __future__ import annotations

import os

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

try:  # redis-py's own packer checks every argument's type in Python first (~2% of a page)
    from hiredis import pack_command as _pack
except ImportError:  # pragma: no cover - hiredis is in requirements.txt
    _pack = None

KEEP_IDLE = 64  # at most this many connections kept between calls; more go back to the pool
POOL_SHARE = 8  # ... and at most 1/8 of the pool's connections (a few callers share one client)


class FastCaller:
    def __init__(self, client: redis.Redis):
        self.pool = client.connection_pool
        self.idle: list = []
        self.pid = os.getpid()
        # A blocking pool hands a freed connection to a waiter: keeping one here could leave a
        # waiter blocked while it sits idle. Such a pool gets every connection back at once.
        blocking = isinstance(self.pool, redis.BlockingConnectionPool)
        share = getattr(self.pool, "max_connections", 2**31) // POOL_SHARE
        self.keep = 0 if blocking else min(KEEP_IDLE, share)

    def __call__(self, *args):
        """One command (e.g. "EVALSHA", sha, n, *keys, *args): its raw reply, or a RedisError."""
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
            if _pack is None:
                conn.send_command(*args)
            else:  # the hot path's arguments are str, int and bytes: hiredis packs them as they are
                conn.send_packed_command([_pack(args)])
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
