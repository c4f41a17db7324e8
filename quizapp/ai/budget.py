"""The cluster-wide OpenAI budget in Redis: a sliding window of calls plus in-flight leases.

The upstream counts a call when the request arrives, and on a starved CPU that can be seconds after
we meant to send it. So a call's window entry is never earlier than its possible arrival: while it
may still be on its way the entry stands at the end of its lease (the future), and once an answer
came back it moves to that moment (the request arrived before its answer). A later call is allowed
only when fewer than `rpm` entries lie within the window before now, whatever the CPU delays.
"""

from __future__ import annotations

import logging
import random
import time
import uuid

import gevent

from .. import redis_conn
from .lua import LUA_NOW

log = logging.getLogger(__name__)

WINDOW_KEY = "ai:budget:window"
INFLIGHT_KEY = "ai:budget:inflight"
# Clock skew between Redis TIME and the upstream's clock: every entry counts this much longer.
WINDOW_GUARD_MS = 500

# KEYS: window zset, in-flight zset. ARGV: rpm, window_ms, max_in_flight, lease_ms, lease_id.
# Returns {1, 0} when a slot was taken, {0, wait_ms} otherwise. Clock: Redis TIME, one for all workers.
ACQUIRE = (
    LUA_NOW
    + """
local rpm, window, cap, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local used = redis.call('ZCARD', KEYS[1])
local flying = redis.call('ZCARD', KEYS[2])
if used < rpm and flying < cap then
  -- Counted from the end of the lease until the call's answer says when it arrived at the latest.
  redis.call('ZADD', KEYS[1], now + lease, ARGV[5])
  redis.call('ZADD', KEYS[2], now + lease, ARGV[5])
  redis.call('PEXPIRE', KEYS[1], window + lease + 1000)
  redis.call('PEXPIRE', KEYS[2], lease + 1000)
  return {1, 0}
end
local wait = 50
if used >= rpm then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  -- An entry still in the future (a call on its way) is re-stamped when it answers: look again soon.
  wait = math.max(1, math.min(tonumber(oldest[2]) + window - now + 1, 1000))
end
return {0, wait}
"""
)

# KEYS: window zset, in-flight zset. ARGV: window_ms. Returns {window used, in flight}.
USAGE = (
    LUA_NOW
    + """
return {redis.call('ZCOUNT', KEYS[1], now - tonumber(ARGV[1]) + 1, '+inf'),
        redis.call('ZCOUNT', KEYS[2], now, '+inf')}
"""
)


# KEYS: window zset, in-flight zset. ARGV: lease_id, answered (1/0), lease_ms, window_ms. The call ended:
# free its in-flight slot; answered, it arrived by now at the latest, so its window entry counts
# from now; unanswered (timeout, connection lost), it may still arrive: a whole lease from now.
FINISH = (
    LUA_NOW
    + """
local stamp = now
if ARGV[2] ~= '1' then stamp = now + tonumber(ARGV[3]) end
redis.call('ZADD', KEYS[1], 'XX', stamp, ARGV[1])
local needed = stamp - now + tonumber(ARGV[4]) + 1000
if redis.call('PTTL', KEYS[1]) < needed then redis.call('PEXPIRE', KEYS[1], needed) end
redis.call('ZREM', KEYS[2], ARGV[1])
return stamp
"""
)


# KEYS: window zset, metrics hash. ARGV: lease_id. The call is about to leave: count it. Its window
# entry keeps its lease-end score (GT never lowers it): it may arrive any time until it answers.
STAMP = (
    LUA_NOW
    + """
redis.call('ZADD', KEYS[1], 'XX', 'GT', now, ARGV[1])
return redis.call('HINCRBY', KEYS[2], 'calls', 1)
"""
)


class BudgetExhausted(Exception):
    """No budget slot could be taken before the job's deadline."""


class Budget:
    """At most `rpm` starts per `window` and `max_in_flight` leases, summed over every worker."""

    def __init__(
        self,
        redis_client,
        rpm: int,
        window_seconds: float,
        max_in_flight: int,
        lease_seconds: float,
        replicas: int = 0,
        wait_timeout_ms: int = 200,
    ):
        self.redis = redis_client
        # Behind Sentinel: a start is on `replicas` replicas before the call leaves (see stamp_start).
        self.replicas = replicas
        self.wait_timeout_ms = wait_timeout_ms
        self.rpm = rpm
        self.window_ms = int(window_seconds * 1000) + WINDOW_GUARD_MS
        self.max_in_flight = max_in_flight
        self.lease_ms = int(lease_seconds * 1000)
        self._acquire = redis_client.register_script(ACQUIRE)
        self._usage = redis_client.register_script(USAGE)
        self._finish = redis_client.register_script(FINISH)
        self._stamp = redis_client.register_script(STAMP)

    def try_acquire(self) -> tuple[str | None, float]:
        """Take a slot now: (lease id, 0) or (None, seconds until a retry may succeed)."""
        lease_id = uuid.uuid4().hex
        taken, wait_ms = self._acquire(
            keys=[WINDOW_KEY, INFLIGHT_KEY],
            args=[
                self.rpm,
                self.window_ms,
                self.max_in_flight,
                self.lease_ms,
                lease_id,
            ],
        )
        return (lease_id, 0.0) if int(taken) else (None, int(wait_ms) / 1000.0)

    def acquire(self, deadline: float) -> str:
        """Wait (cooperatively) for a slot until `deadline` (time.time()); raise BudgetExhausted."""
        while True:
            lease_id, wait = self.try_acquire()
            if lease_id:
                return lease_id
            remaining = deadline - time.time()
            if remaining <= 0:
                raise BudgetExhausted()
            # Jitter spreads the contenders of every worker so they do not wake in lockstep.
            gevent.sleep(min(wait, remaining, 1.0) + random.uniform(0, 0.05))

    def stamp_start(self, lease_id: str, metrics_key: str) -> None:
        """The call starts now: count it (its window entry keeps its lease-end score, see FINISH).

        With replicas wanted, the call may only start once a replica holds this start (and the
        slot taken before it): a failover then never forgets a call made, so never over-spends.
        """
        if not self.replicas:
            self._stamp(keys=[WINDOW_KEY, metrics_key], args=[lease_id])
            return
        pipe = self.redis.pipeline(transaction=False)
        self._stamp(keys=[WINDOW_KEY, metrics_key], args=[lease_id], client=pipe)
        redis_conn.wait_in_pipeline(pipe, replicas=self.replicas, timeout_ms=self.wait_timeout_ms)
        _, acked = pipe.execute()
        if not redis_conn.check_replicated(int(acked), replicas=self.replicas):
            raise redis_conn.NotReplicated("the budget slot did not reach a replica in time")

    def release(self, lease_id: str, answered: bool = True) -> None:
        """The call ended: free its in-flight slot; its window entry counts from its latest
        possible arrival (now if the upstream answered, a lease from now if it did not)."""
        self._finish(
            keys=[WINDOW_KEY, INFLIGHT_KEY],
            args=[lease_id, int(answered), self.lease_ms, self.window_ms],
        )

    def refund(self, lease_id: str) -> None:
        """No call was made after all: free both the window entry and the in-flight slot."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.zrem(INFLIGHT_KEY, lease_id)
        pipe.zrem(WINDOW_KEY, lease_id)
        pipe.execute()

    def usage(self) -> dict:
        used, flying = self._usage(keys=[WINDOW_KEY, INFLIGHT_KEY], args=[self.window_ms])
        return {
            "window_used": int(used),
            "window_limit": self.rpm,
            "in_flight": int(flying),
            "in_flight_limit": self.max_in_flight,
        }
